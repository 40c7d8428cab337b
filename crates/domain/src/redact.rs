//! Connection URLs made fit for logs and error messages: whatever could be a secret in them is
//! hidden.

/// `url` with its password replaced by `***`, wherever it is: in the user info
/// (`postgres://user:secret@host`, `redis://:secret@host`) or in a `password=` or
/// `sslpassword=` query parameter. A URL that holds none comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    // The last `@` before the query ends the user info, even if the password holds a raw `/`
    // or `@`: in doubt, more is hidden, never less.
    let before_query = match before_query.rsplit_once('@') {
        Some((user_info, host_and_path)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host_and_path}"),
            None => before_query.to_owned(),
        },
        None => before_query.to_owned(),
    };
    match query {
        None => format!("{scheme}://{before_query}"),
        Some(query) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if is_secret_parameter(key) => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{scheme}://{before_query}?{}", params.join("&"))
        }
    }
}

fn is_secret_parameter(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_user_info_is_hidden() {
        assert_eq!(redact_url("postgres://convo:s3cret@db:5432/convo"), "postgres://convo:***@db:5432/convo");
        assert_eq!(redact_url("redis://:s3cret@cache:6379/0"), "redis://:***@cache:6379/0");
    }

    #[test]
    fn a_password_holding_slashes_or_at_signs_is_hidden_whole() {
        assert_eq!(
            redact_url("postgres://convo:a/b@c@db/convo?sslmode=require"),
            "postgres://convo:***@db/convo?sslmode=require"
        );
    }

    #[test]
    fn a_password_in_the_query_is_hidden() {
        assert_eq!(
            redact_url("postgres://db/convo?user=convo&password=s3cret&sslmode=disable"),
            "postgres://db/convo?user=convo&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://db/convo?SSLPASSWORD=s3cret"),
            "postgres://db/convo?SSLPASSWORD=***"
        );
    }

    #[test]
    fn a_url_without_secrets_is_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/convo",
            "sqlite://data/convo.db?mode=rwc",
            "redis://127.0.0.1:6379",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
