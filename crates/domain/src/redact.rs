//! Connection URLs made fit for logs and error messages: whatever could be a secret in them is
//! hidden.

/// `url` with whatever could be a secret in it replaced by `***`, however the URL is spelled:
///
/// - the password of the user info (`postgres://user:secret@host`, `redis://:secret@host`), up
///   to the **last** `@` before the host, so a password holding a raw `@`, `/`, `?` or `#` is
///   hidden whole; with several hosts (`postgres://u:p@h1,h2/db`) too;
/// - a lone user info in a Redis URL (`redis://secret@host`), which some clients read as the
///   password (a lone PostgreSQL user is a role name and stays);
/// - every query parameter whose name, percent-decoded, speaks of a secret (`password`,
///   `sslpassword`, `sentinelPassword`, `auth_token`, `key`, ...);
/// - in text that is no URL at all (`host=db password=secret`), each `name=value` word whose name
///   speaks of a secret, quoted values included.
///
/// SQLite URLs hold a path, never a user info: only their parameters are looked at. In doubt,
/// more is hidden, never less. A URL that holds none comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest, separator): (&str, &str, fn(char) -> bool) = match url.find("://") {
        Some(scheme_end) => (&url[..scheme_end + 3], &url[scheme_end + 3..], |c| c == '?' || c == '&'),
        None => ("", url, |c| c.is_whitespace() || c == '?' || c == '&'),
    };
    let scheme = prefix.trim_end_matches("://").trim().to_ascii_lowercase();
    let mut shown = prefix.to_owned();
    let tail = match split_user_info(&scheme, rest) {
        Some((user_info, host_and_after)) => {
            match user_info.split_once(':') {
                Some((user, _password)) => shown.push_str(&format!("{user}:***@")),
                None if scheme.starts_with("redis") => shown.push_str("***@"),
                None => shown.push_str(&format!("{user_info}@")),
            }
            host_and_after
        }
        None if !prefix.is_empty() => return shown + &redact_pairs(&hide_port_password(rest), separator),
        None => rest,
    };
    shown.push_str(&redact_pairs(tail, separator));
    shown
}

/// A URL whose user info lost its `@host` (`postgres://user:secret`, `postgres://user:secret/db`)
/// reads as `host:port`: a port that is no number is hidden, in case it is that password.
fn hide_port_password(rest: &str) -> std::borrow::Cow<'_, str> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && !port.bytes().all(|b| b.is_ascii_digit())
                && !authority.starts_with('[') =>
        {
            format!("{host}:***{after}").into()
        }
        _ => rest.into(),
    }
}

/// The user info and what follows it, when `rest` (the URL after `scheme://`) has one: it ends at
/// the last `@`, unless what would be its user name holds a `?`, `#` or `=`, which no user name
/// does unencoded: that `@` is in the query (`?user=ada@example.com`).
fn split_user_info<'a>(scheme: &str, rest: &'a str) -> Option<(&'a str, &'a str)> {
    if scheme.starts_with("sqlite") {
        return None;
    }
    let (user_info, after) = rest.rsplit_once('@')?;
    let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
    (!user.contains(['?', '#', '='])).then_some((user_info, after))
}

/// `text` with the value of every `name=value` whose name speaks of a secret replaced by `***`;
/// pairs are separated by the characters `separator` accepts. A value opened by a quote runs to
/// its closing quote, separators included.
fn redact_pairs(text: &str, separator: impl Fn(char) -> bool) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        if separator(first) {
            shown.push(first);
            rest = &rest[first.len_utf8()..];
            continue;
        }
        let end = rest.find(&separator).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, value)) if is_secret_name(name) => {
                shown.push_str(name);
                shown.push_str("=***");
                let value_start = name.len() + 1;
                let consumed = match value.chars().next() {
                    Some(quote @ ('\'' | '"')) => rest[value_start + 1..]
                        .find(quote)
                        .map_or(rest.len(), |closing| value_start + 1 + closing + 1),
                    _ => end,
                };
                rest = &rest[consumed..];
            }
            _ => {
                shown.push_str(pair);
                rest = &rest[end..];
            }
        }
    }
    shown
}

/// Whether a parameter named `name` (percent-encoded or not, in any case) may hold a secret.
fn is_secret_name(name: &str) -> bool {
    let name = percent_decoded(name).to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key", "auth", "credential"].iter().any(|word| name.contains(word))
}

/// `text` with its `%XX` escapes decoded (and `+` read as a space, as in a query); an escape that
/// is not one is kept as written.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                decoded.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
                i += 3;
            }
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each URL, the secrets that must not survive it, and what is shown when the test pins it.
    const TRICKY: &[(&str, &[&str], Option<&str>)] = &[
        ("postgres://convo:Zs3cret@db:5432/convo", &["Zs3cret"], Some("postgres://convo:***@db:5432/convo")),
        ("postgres://convo:Zp@ss@w0rd@db/convo", &["Zp", "ss@w0rd"], Some("postgres://convo:***@db/convo")),
        (
            "postgres://convo:Za/b@c@db/convo?sslmode=require",
            &["Za/b", "b@c"],
            Some("postgres://convo:***@db/convo?sslmode=require"),
        ),
        ("postgres://convo:Zq1?Xy#9@db/convo", &["Zq1", "Xy#9"], Some("postgres://convo:***@db/convo")),
        (
            "postgres://convo:Zp%40ss%3Aw@db/convo",
            &["Zp%40ss", "w@db"],
            Some("postgres://convo:***@db/convo"),
        ),
        ("postgres://ada%40corp:Zs3cret@db/convo", &["Zs3cret"], Some("postgres://ada%40corp:***@db/convo")),
        (
            "postgres://ada@corp.example:Zs3cret@db/convo",
            &["Zs3cret"],
            Some("postgres://ada@corp.example:***@db/convo"),
        ),
        ("postgres://u:Zs3cret@h1,h2:5433/db", &["Zs3cret"], Some("postgres://u:***@h1,h2:5433/db")),
        ("postgresql://u:Zs3cret@[::1]:5432/db", &["Zs3cret"], Some("postgresql://u:***@[::1]:5432/db")),
        (
            "postgres://u:Zs3cret@/db?host=/var/run/postgresql",
            &["Zs3cret"],
            Some("postgres://u:***@/db?host=/var/run/postgresql"),
        ),
        ("POSTGRES://U:Zs3cret@H/DB", &["Zs3cret"], Some("POSTGRES://U:***@H/DB")),
        ("  postgres://u:Zs3cret@h/db#top", &["Zs3cret"], None),
        ("postgres://u:Zs3cret", &["Zs3cret"], Some("postgres://u:***")),
        ("postgres://u:Zs3cret/db", &["Zs3cret"], Some("postgres://u:***/db")),
        (
            "postgres://db/convo?user=convo&password=Zs3cret&sslmode=disable",
            &["Zs3cret"],
            Some("postgres://db/convo?user=convo&password=***&sslmode=disable"),
        ),
        (
            "postgres://db/convo?user=ada@example.com&password=Zs3cret",
            &["Zs3cret"],
            Some("postgres://db/convo?user=ada@example.com&password=***"),
        ),
        (
            "postgres://db/convo?password=Za:b@Zc&x=1",
            &["Za", "b@Zc"],
            Some("postgres://db/convo?password=***&x=1"),
        ),
        ("postgres://db/convo?PASSWORD=Zs3cret", &["Zs3cret"], None),
        ("postgres://db/convo?SSLPASSWORD=Zs3cret", &["Zs3cret"], None),
        ("postgres://db/convo?pass%77ord=Zs3cret", &["Zs3cret"], Some("postgres://db/convo?pass%77ord=***")),
        ("postgres://db/convo?p%61ssword=Zs3cret", &["Zs3cret"], None),
        ("postgres://db/convo?password=\"Zs3 cret\"", &["Zs3", "cret"], None),
        ("redis://:Zs3cret@cache:6379/0", &["Zs3cret"], Some("redis://:***@cache:6379/0")),
        ("redis://Zs3cret@cache:6379", &["Zs3cret"], Some("redis://***@cache:6379")),
        ("redis://default:Zs3cret@cache", &["Zs3cret"], Some("redis://default:***@cache")),
        ("rediss://u:Zs3cret@cache:6380", &["Zs3cret"], Some("rediss://u:***@cache:6380")),
        (
            "redis-cluster://:Zs3cret@n1:7000?node=n2:7001",
            &["Zs3cret"],
            Some("redis-cluster://:***@n1:7000?node=n2:7001"),
        ),
        ("redis-sentinel://h:26379/mymaster?sentinelPassword=Zs3cret", &["Zs3cret"], None),
        ("redis://cache:6379/0?password=Zs3cret", &["Zs3cret"], Some("redis://cache:6379/0?password=***")),
        ("redis://cache?auth_token=Zs3cret", &["Zs3cret"], None),
        (
            "sqlite://data/convo.db?mode=rwc&key=Zs3cret",
            &["Zs3cret"],
            Some("sqlite://data/convo.db?mode=rwc&key=***"),
        ),
        ("sqlite:data/convo.db?password=Zs3cret", &["Zs3cret"], None),
        (
            "host=db user=convo password=Zs3cret dbname=convo",
            &["Zs3cret"],
            Some("host=db user=convo password=*** dbname=convo"),
        ),
        (
            "host=db password='Zs3 cret' dbname=convo",
            &["Zs3", "cret"],
            Some("host=db password=*** dbname=convo"),
        ),
        ("convo:Zs3cret@db/convo", &["Zs3cret"], Some("convo:***@db/convo")),
    ];

    #[test]
    fn no_secret_survives_any_spelling() {
        for (url, secrets, expected) in TRICKY {
            let shown = redact_url(url);
            for secret in *secrets {
                assert!(!shown.contains(secret), "{secret:?} survives in {shown:?} (from {url:?})");
            }
            if let Some(expected) = expected {
                assert_eq!(&shown, expected, "from {url:?}");
            }
        }
    }

    #[test]
    fn a_url_without_secrets_is_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/convo",
            "postgres://db:5432/convo?sslmode=require&application_name=convo",
            "postgres://[::1]:5432/convo",
            "sqlite://data/convo.db?mode=rwc",
            "sqlite:///var/lib/convo@2/convo.db?mode=rwc",
            "sqlite::memory:",
            "redis://127.0.0.1:6379",
            "redis-cluster://n1:7000?node=n2:7001",
            "ada@example.com",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
