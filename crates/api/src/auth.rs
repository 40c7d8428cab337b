//! `/auth/*`: registration, login, logout and the bearer security scheme every other
//! authenticated route uses.

use chrono::{DateTime, Utc};
use convo_domain::{self as domain, AccessGrant, Email, IssuedToken, Password, Principal, Username};
use poem::Request;
use poem::web::Data;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, SecurityScheme};
use uuid::Uuid;

use crate::ApiTags;
use crate::client_address::client_address;
use crate::field::Field;
use crate::problem::{ApiError, declare_errors};
use crate::rules;
use crate::state::AppState;

/// A JWT access token from `/auth/register` or `/auth/login`, sent as
/// `Authorization: Bearer <access_token>`. It is accepted while its session lives.
#[derive(SecurityScheme)]
#[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub AccessGrant);

impl BearerAuth {
    /// Who is calling, through which session.
    pub fn principal(&self) -> &Principal {
        &self.0.principal
    }
}

async fn check_bearer(request: &Request, bearer: Bearer) -> poem::Result<AccessGrant> {
    let state = request.data::<AppState>().ok_or_else(|| {
        poem::Error::from(ApiError::from(domain::DomainError::internal("AppState is not in the route data")))
    })?;
    state.auth.authenticate(&bearer.token).await.map_err(|error| ApiError::from(error).into())
}

/// A registered user. Never carries a password or its hash.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
}

impl From<domain::User> for User {
    fn from(user: domain::User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            username: user.username.as_str().to_owned(),
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Clone, Copy, Enum)]
pub enum TokenType {
    Bearer,
}

/// A new session: the token to send as a bearer token, and who it belongs to.
#[derive(Debug, Clone, Object)]
pub struct AuthResponse {
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds the session lives without activity (`SESSION_TTL`); each authenticated request
    /// extends it again.
    pub expires_in: u64,
    pub user: User,
}

impl From<IssuedToken> for AuthResponse {
    fn from(issued: IssuedToken) -> Self {
        Self {
            access_token: issued.access_token,
            token_type: TokenType::Bearer,
            expires_in: issued.expires_in.as_secs(),
            user: issued.user.into(),
        }
    }
}

/// Registration details.
#[derive(Object)]
#[oai(example)]
pub struct RegisterRequest {
    /// A valid address, at most 254 characters; compared without regard to case, surrounding
    /// white space ignored.
    pub email: Field<String, rules::EmailAddress>,
    /// 3-20 characters of `A-Z a-z 0-9 _`, unique without regard to case.
    pub username: Field<String, rules::Username>,
    /// 8-128 characters with a lower-case letter, an upper-case letter and a digit.
    pub password: Field<String, rules::NewPassword>,
}

/// Login details.
#[derive(Object)]
#[oai(example)]
pub struct LoginRequest {
    /// The address registered with, in any case; surrounding white space ignored.
    pub email: Field<String, rules::EmailAddress>,
    /// As typed at registration: 1-128 characters.
    pub password: Field<String, rules::PasswordAttempt>,
}

// The document's examples, which Swagger UI pre-fills: the README walk-through's user, so that
// "Try it out" registers and then logs in as it.
impl poem_openapi::types::Example for RegisterRequest {
    fn example() -> Self {
        Self {
            email: Field::of("ada@example.com".to_owned()),
            username: Field::of("ada".to_owned()),
            password: Field::of("Passw0rd!".to_owned()),
        }
    }
}

impl poem_openapi::types::Example for LoginRequest {
    fn example() -> Self {
        Self { email: Field::of("ada@example.com".to_owned()), password: Field::of("Passw0rd!".to_owned()) }
    }
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Registered and logged in.
    #[oai(status = 201)]
    Created(Json<AuthResponse>),
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Logged in: a new session.
    #[oai(status = 200)]
    Ok(Json<AuthResponse>),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// The session has ended.
    #[oai(status = 204)]
    Done,
}

/// A ticket that opens one WebSocket: `GET /ws?ticket=...`.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct WsTicket {
    /// Single use.
    pub ticket: String,
    /// Seconds it stays valid (30).
    pub expires_in: u64,
}

#[derive(ApiResponse)]
pub enum WsTicketResponse {
    /// A fresh ticket.
    #[oai(status = 200)]
    Ok(Json<WsTicket>),
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The caller's account.
    #[oai(status = 200)]
    Ok(Json<User>),
}

declare_errors! {
    RegisterError: [400, 409, 413, 429];
    LoginError: [400, 401, 413, 429];
    /// Errors of routes that only need a valid token.
    SessionError: [401];
}

pub struct AuthApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Register a user
    ///
    /// Creates the account and logs it in. Registrations do not count against login limits;
    /// attempts are limited per client address (`TOO_MANY_ATTEMPTS` with `Retry-After`).
    #[oai(path = "/auth/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        request: &Request,
        body: Json<RegisterRequest>,
    ) -> Result<RegisterResponse, RegisterError> {
        let Json(body) = body;
        let email = Email::parse(&body.email.get(domain::Field::Email)?)?;
        let username = Username::parse(&body.username.get(domain::Field::Username)?)?;
        let password = Password::parse(&body.password.get(domain::Field::Password)?)?;
        let client = client_address(request);
        let issued = state.auth.register(email, username, password, client).await?;
        Ok(RegisterResponse::Created(Json(issued.into())))
    }

    /// Log in
    ///
    /// Opens a new session; a user may hold many. An unknown email and a wrong password get the
    /// same answer. Failed attempts are limited per email and per client address
    /// (`TOO_MANY_ATTEMPTS` with `Retry-After`).
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        request: &Request,
        body: Json<LoginRequest>,
    ) -> Result<LoginResponse, LoginError> {
        let Json(body) = body;
        let email = Email::parse(&body.email.get(domain::Field::Email)?)?;
        let password = Password::attempt(&body.password.get(domain::Field::Password)?)?;
        let client = client_address(request);
        let issued = state.auth.login(email, password, client).await?;
        Ok(LoginResponse::Ok(Json(issued.into())))
    }

    /// Log out
    ///
    /// Ends this session at once, everywhere; the user's other sessions go on.
    #[oai(path = "/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
    ) -> Result<LogoutResponse, SessionError> {
        state.auth.logout(caller.principal()).await?;
        Ok(LogoutResponse::Done)
    }

    /// Log out everywhere
    ///
    /// Ends every session of the user, this one included.
    #[oai(path = "/auth/logout-all", method = "post", operation_id = "logoutAll")]
    async fn logout_all(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
    ) -> Result<LogoutResponse, SessionError> {
        state.auth.logout_all(caller.principal()).await?;
        Ok(LogoutResponse::Done)
    }

    /// A WebSocket ticket
    ///
    /// For browsers, which cannot set `Authorization` on a WebSocket handshake: open
    /// `GET /ws?ticket=...` within 30 seconds. Each ticket opens one connection.
    #[oai(path = "/ws/ticket", method = "post", operation_id = "createWsTicket")]
    async fn ws_ticket(
        &self,
        state: Data<&AppState>,
        caller: BearerAuth,
    ) -> Result<WsTicketResponse, SessionError> {
        let ticket = state.auth.issue_connect_ticket(&caller.0).await?;
        Ok(WsTicketResponse::Ok(Json(WsTicket {
            ticket: ticket.ticket,
            expires_in: ticket.expires_in.as_secs(),
        })))
    }

    /// The caller's account
    #[oai(path = "/auth/me", method = "get", operation_id = "getCurrentUser")]
    async fn me(&self, state: Data<&AppState>, caller: BearerAuth) -> Result<MeResponse, SessionError> {
        let user = state.auth.me(caller.principal()).await?;
        Ok(MeResponse::Ok(Json(user.into())))
    }
}
