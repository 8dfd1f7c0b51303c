//! The Swift API subset (`/auth/v1.0`, `/v1/AUTH_account/container[/object]`).

use std::sync::Arc;

use crate::shared::Shared;

/// Serve one Swift request.
pub async fn handle(
    _gw: &Arc<Shared>,
    _req: http::Request<s3s::Body>,
) -> http::Response<s3s::Body> {
    http::Response::builder()
        .status(http::StatusCode::NOT_IMPLEMENTED)
        .body(s3s::Body::from(
            "the Swift API is not served yet\n".to_string(),
        ))
        .unwrap_or_default()
}
