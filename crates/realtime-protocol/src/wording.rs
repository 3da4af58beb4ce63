//! Upstream's error and notice wording, byte-exact: connect refusals, join refusal reasons,
//! channel-stop messages and the REST API's errors (PROTOCOL.md §1.5, §4.4, §15;
//! CONTROL-PLANE.md). Clients and operators match on these strings, so the gateway never
//! spells them itself.

/// §1.5 connect refusals: the `error` value of the JSON body. Upstream:
/// `lib/realtime_web/channels/user_socket.ex`.
pub mod http {
    /// 404.
    pub const TENANT_NOT_FOUND: &str = "Tenant not found";
    /// 403.
    pub const REALTIME_DISABLED: &str = "Realtime was disabled for this tenant";
    /// 401.
    pub const API_KEY_MISSING: &str = "API key is missing";
    /// 401.
    pub const MALFORMED_JWT: &str = "The token provided is not a valid JWT";
    /// 401.
    pub const TOKEN_EXPIRED: &str = "Token has expired";
    /// 401.
    pub const ROLE_AND_EXP_REQUIRED: &str = "Fields `role` and `exp` are required in JWT";
    /// 401.
    pub const SIGNATURE_ERROR: &str = "Failed to validate JWT signature";
    /// 401.
    pub const SIGNER_ERROR: &str =
        "Failed to generate JWT signer, check your JWT secret or JWKS configuration";
    /// 500: any other JWT failure.
    pub const ERROR_CONNECTING: &str = "Error connecting to Realtime";
    /// 429.
    pub const TOO_MANY_CONNECTED_USERS: &str = "Too many connected users";
    /// 429.
    pub const TOO_MANY_JOINS: &str = "Too many joins per second";

    /// 401 when the JWKS has no key for `kid`.
    pub fn signer_error_for_kid(kid: &str) -> String {
        format!(
            "Failed to generate JWT signer for key ID (kid) \"{kid}\", check your JWT secret or JWKS configuration"
        )
    }

    /// The refusal body, `{"error": message}`.
    pub fn body(message: &str) -> String {
        serde_json::json!({ "error": message }).to_string()
    }
}

/// §15.3 join error reasons (every one delayed 5 s by the caller). Upstream:
/// `lib/realtime_web/channels/realtime_channel.ex` (the prefix is its log error code), unless
/// noted.
pub mod join {
    /// Topic is exactly `realtime:`.
    pub const TOPIC_NAME_REQUIRED: &str = "TopicNameRequired: You must provide a topic name";
    /// Server shutting down.
    pub const REALTIME_RESTARTING: &str =
        "RealtimeRestarting: Realtime is restarting, please standby";
    /// Tenant vanished after connect (socket then closed 1001).
    pub const TENANT_NOT_FOUND: &str = "TenantNotFound: Tenant with the given ID does not exist";
    /// Tenant is `private_only` and the channel is public.
    pub const PRIVATE_ONLY: &str = "PrivateOnly: This project only allows private channels";
    /// Concurrent users limit.
    pub const CONNECTION_RATE_LIMIT: &str = "ConnectionRateLimitReached: Too many connected users";
    /// Join rate limit (socket then closed 1001).
    pub const CLIENT_JOIN_RATE_LIMIT: &str =
        "ClientJoinRateLimitReached: Too many joins per second";
    /// Channels-per-client limit.
    pub const CHANNEL_RATE_LIMIT: &str = "ChannelRateLimitReached: Too many channels";
    /// Claims lack `role` or `exp`.
    pub const ROLE_AND_EXP_REQUIRED: &str =
        "InvalidJWTToken: Fields `role` and `exp` are required in JWT";
    /// `exp` ≤ now after rounding.
    pub const EXPIRATION_INVALID: &str = "InvalidJWTToken: Token expiration time is invalid";
    /// Malformed join token.
    pub const MALFORMED_JWT: &str = "MalformedJWT: The token provided is not a valid JWT";
    /// Signature mismatch.
    pub const SIGNATURE_ERROR: &str = "JwtSignatureError: Failed to validate JWT signature";
    /// No usable key.
    pub const SIGNER_ERROR: &str =
        "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration";
    /// Tenant database unreachable.
    pub const UNABLE_TO_CONNECT: &str =
        "UnableToConnectToProject: Realtime was unable to connect to the project database";
    /// Policy check failed with a connection-level error (no prefix).
    pub const UNABLE_TO_CONNECT_NO_PREFIX: &str =
        "Realtime was unable to connect to the project database";
    /// Database connection still starting.
    pub const INITIALIZING_PROJECT_CONNECTION: &str =
        "InitializingProjectConnection: Realtime is initializing the project connection";
    /// Database connection still starting (other phase).
    pub const CONNECTING_TO_PROJECT_DATABASE: &str =
        "InitializingProjectConnection: Connecting to the project database";
    /// Database refuses connections.
    pub const DATABASE_LACK_OF_CONNECTIONS: &str =
        "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect";
    /// Database connect attempts throttled.
    pub const DATABASE_CONNECTION_RATE_LIMIT: &str =
        "DatabaseConnectionRateLimitReached: Too many database connections attempts per second";
    /// Pool exhausted during policy checks.
    pub const INCREASE_CONNECTION_POOL: &str =
        "IncreaseConnectionPool: Please increase your connection pool size";
    /// `realtime.messages` partition missing.
    pub const MISSING_PARTITION: &str =
        "MissingPartition: Realtime was unable to find the expected messages partition";
    /// Tenant suspended (race with disconnect).
    pub const REALTIME_DISABLED_FOR_TENANT: &str =
        "RealtimeDisabledForTenant: Realtime disabled for this tenant";
    /// Replay requested on a public channel.
    pub const REPLAY_PUBLIC: &str =
        "UnableToReplayMessages: Replay is not allowed for public channels";
    /// Bad replay `since` / `limit`.
    pub const REPLAY_PARAMS_INVALID: &str = "UnableToReplayMessages: Replay params are not valid";
    /// Replay query failed.
    pub const REPLAY_FAILED: &str =
        "UnableToReplayMessages: Realtime was unable to replay messages";
    /// Cluster RPC timeout.
    pub const RPC_TIMEOUT: &str = "TimeoutOnRpcCall: Node request timeout";
    /// Anything else.
    pub const UNKNOWN_ERROR: &str = "Unknown Error on Channel";
    /// Topic over 1024 bytes. This server's own guard (upstream has no cap), worded in
    /// upstream's `Code: message` style.
    pub const TOPIC_NAME_TOO_LONG: &str = "TopicNameTooLong: Topic names are limited to 1024 bytes";
    /// Join payload that is not a JSON object. This server's own wording (upstream's channel
    /// crashes instead), under upstream's `UnknownErrorOnChannel` code.
    pub const PAYLOAD_NOT_AN_OBJECT: &str = "UnknownErrorOnChannel: join payload must be an object";
    /// Prefix shared by every [`token_expired`] reason.
    pub const TOKEN_EXPIRED_PREFIX: &str = "InvalidJWTToken: Token has expired";

    /// `InvalidJWTToken: Token has expired N seconds ago`.
    pub fn token_expired(seconds_ago: i64) -> String {
        format!("InvalidJWTToken: Token has expired {seconds_ago} seconds ago")
    }

    /// `JwtSignerError: ` plus the kid-specific signer error.
    pub fn signer_error_for_kid(kid: &str) -> String {
        format!("JwtSignerError: {}", super::http::signer_error_for_kid(kid))
    }

    /// `Unauthorized: You do not have permissions to read from this Channel topic: <sub>`.
    pub fn unauthorized(sub_topic: &str) -> String {
        format!(
            "Unauthorized: {}",
            super::stop::no_read_permission(sub_topic)
        )
    }

    /// `QueryCanceled: <details>`.
    pub fn query_canceled(details: &str) -> String {
        format!("QueryCanceled: {details}")
    }

    /// `ErrorOnRpcCall: RPC call error: <detail>`.
    pub fn rpc_error(detail: &str) -> String {
        format!("ErrorOnRpcCall: RPC call error: {detail}")
    }

    /// `UnknownErrorOnChannel: <message>`.
    pub fn unknown_error(message: &str) -> String {
        format!("UnknownErrorOnChannel: {message}")
    }
}

/// §15.4 channel-stop `system` messages (status `error`, then `phx_close`). Upstream:
/// `lib/realtime_web/channels/realtime_channel.ex`.
pub mod stop {
    /// Events limiter triggered at delivery.
    pub const TOO_MANY_MESSAGES: &str = "Too many messages per second";
    /// Tenant presence rate.
    pub const TOO_MANY_PRESENCE_MESSAGES: &str = "Too many presence messages per second";
    /// Client presence window.
    pub const CLIENT_PRESENCE_RATE_LIMIT: &str = "Client presence rate limit exceeded";
    /// Track meta too large.
    pub const TRACK_MESSAGE_SIZE_EXCEEDED: &str = "Track message size exceeded";
    /// Refreshed token lacks claims.
    pub const ROLE_AND_EXP_REQUIRED: &str = "Fields `role` and `exp` are required in JWT";
    /// Refreshed token malformed (including `""`).
    pub const MALFORMED_JWT: &str = "The token provided is not a valid JWT";
    /// Refreshed token with a bad signature (upstream prints the error atom).
    pub const SIGNATURE_ERROR: &str = ":signature_error";
    /// Refreshed token without a usable key (upstream prints the error atom).
    pub const SIGNER_ERROR: &str = ":error_generating_signer";
    /// Database failure while re-authorising.
    pub const UNABLE_TO_CONNECT: &str = "Realtime was unable to connect to the project database";
    /// Policy query cancelled while re-authorising.
    pub const QUERY_CANCELLED: &str = "Query was cancelled, please try again";
    /// Cluster RPC timeout.
    pub const RPC_TIMEOUT: &str = "Node request timeout";
    /// Replication readiness timed out.
    pub const REPLICATION_NOT_ESTABLISHED_IN_TIME: &str =
        crate::reply::REPLICATION_NOT_ESTABLISHED_IN_TIME;

    /// Refreshed token whose fractional `exp` lapsed in rounding: upstream prints the
    /// non-positive difference (PROTOCOL.md §4.4, "0" sic).
    pub fn expiration_invalid(difference: i64) -> String {
        difference.to_string()
    }

    /// Any other refreshed-token failure: an Elixir-style dump of the error (PROTOCOL.md
    /// §4.4; clients do not rely on the exact text).
    pub fn invalid_token(detail: &str) -> String {
        format!("[message: \"Invalid token\", detail: {detail:?}]")
    }

    /// `Token has expired N seconds ago`.
    pub fn token_expired(seconds_ago: i64) -> String {
        format!("Token has expired {seconds_ago} seconds ago")
    }

    /// The kid-specific signer error, unprefixed.
    pub fn signer_error_for_kid(kid: &str) -> String {
        super::http::signer_error_for_kid(kid)
    }

    /// Private channel without read permission after a refresh.
    pub fn no_read_permission(sub_topic: &str) -> String {
        format!("You do not have permissions to read from this Channel topic: {sub_topic}")
    }

    /// Private channel whose read permission a refresh revoked.
    pub fn read_permission_revoked(sub_topic: &str) -> String {
        format!("You no longer have permission to read from this Channel topic: {sub_topic}")
    }

    /// `RPC call error: <detail>`.
    pub fn rpc_error(detail: &str) -> String {
        format!("RPC call error: {detail}")
    }
}

/// WebSocket-level notices that are not replies.
pub mod socket {
    /// Error code logged when a text frame is not valid UTF-8 (upstream
    /// `lib/realtime_web/socket.ex`, `MalformedWebSocketMessage`); the socket closes 1007.
    pub const MALFORMED_WEBSOCKET_MESSAGE: &str = "MalformedWebSocketMessage";
    /// The message logged with it.
    pub const INVALID_UTF8: &str = "MalformedWebSocketMessage: text frame is not valid UTF-8";
}

/// REST API errors (`/api/ping`, `/api/broadcast*`; CONTROL-PLANE.md §5.5), the value of the
/// body's `message` (or `error`) key unless noted.
pub mod rest {
    /// 401 unknown tenant (upstream `lib/realtime_web/plugs/assign_tenant.ex`).
    pub const TENANT_NOT_FOUND_IN_DATABASE: &str = "Tenant not found in database";
    /// 500 tenant lookup failure (Phoenix's generic error page text).
    pub const INTERNAL_SERVER_ERROR: &str = "Internal Server Error";
    /// 429 request limiter (upstream `lib/realtime_web/plugs/rate_limiter.ex`).
    pub const TOO_MANY_REQUESTS: &str = "Too many requests";
    /// 200 `/api/ping`.
    pub const SUCCESS: &str = "Success";
    /// 406 plain-text body for a refused `Accept` (Phoenix's `NotAcceptableError`).
    pub const NOT_ACCEPTABLE: &str = "Not Acceptable";
    /// 401 missing or invalid token (upstream `lib/realtime_web/plugs/auth_tenant.ex`); also the
    /// 403 of a denied private write (`lib/realtime/tenants/single_broadcast.ex`).
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// 403 suspended tenant (upstream `lib/realtime/tenants/batch_broadcast.ex`).
    pub const TENANT_SUSPENDED: &str = "Tenant is suspended";
    /// 400 unparsable body (Phoenix's `Plug.Parsers` error page text).
    pub const BAD_REQUEST: &str = "Bad Request";
    /// Ecto's required-field error, listed under `errors.<field>`.
    pub const CANT_BE_BLANK: &str = "can't be blank";
    /// 422 `errors.payload` (upstream `lib/realtime/tenants/batch_broadcast.ex`).
    pub const PAYLOAD_SIZE_EXCEEDS_TENANT_LIMIT: &str = "Payload size exceeds tenant limit";
    /// 429 events budget spent (upstream `lib/realtime/tenants/batch_broadcast.ex`).
    pub const RATE_LIMIT_EXCEEDED: &str = "You have exceeded your rate limit";
    /// 429 batch larger than the budget left (upstream `lib/realtime/tenants/batch_broadcast.ex`).
    pub const TOO_MANY_MESSAGES_IN_BATCH: &str =
        "Too many messages to broadcast, please reduce the batch size";
    /// 415, under the `error` key (upstream
    /// `lib/realtime_web/plugs/validate_broadcast_content_type.ex`).
    pub const UNSUPPORTED_MEDIA_TYPE: &str =
        "Unsupported Media Type. Use application/json or application/octet-stream";
    /// 422 policy query error (upstream `lib/realtime/tenants/single_broadcast.ex`).
    pub const RLS_POLICY_ERROR: &str = "RLS policy error";
    /// 422 policy query cancelled (upstream `lib/realtime/tenants/single_broadcast.ex`).
    pub const QUERY_CANCELED: &str = "Query canceled";
    /// 422 `realtime.messages` partition missing (upstream
    /// `lib/realtime/tenants/single_broadcast.ex`).
    pub const MISSING_PARTITION: &str = "Missing messages partition";
    /// 422 tenant database unreachable (upstream `lib/realtime/tenants/single_broadcast.ex`).
    pub const TENANT_DATABASE_UNAVAILABLE: &str = "Tenant database unavailable";
}
