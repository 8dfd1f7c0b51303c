//! The Swift API subset (`/auth/v1.0`, `/v1/AUTH_account/container[/object]`, `/info`), as
//! python-swiftclient and the `swift` CLI use it, answering like Swift 2.30 with tempauth:
//!
//! * [`auth`]: logins checked against the gateway's credentials (user `account:name`), tokens
//!   in a bounded in-memory map; every `/v1/` request needs a token of its path's account.
//! * [`container`]: account and container GET/HEAD (listings from the store after a flush,
//!   plain or JSON), container PUT (a backed table over an existing store container), DELETE
//!   (409 if not empty, else refused: the gateway does not delete store containers), POST.
//! * [`object`]: object GET/HEAD/PUT/DELETE/POST/COPY on [`crate::objects`].
//! * [`util`]: paths, queries, headers, ranges, conditionals, dates and Swift's error pages.
//!
//! Containers are the S3 API's buckets: the same backed tables (`docs/faas.md`, "The S3 and
//! Swift endpoint").

mod auth;
mod container;
mod object;
mod util;

use std::sync::Arc;

use http::{Method, StatusCode};

pub use auth::{Tokens, MAX_TOKENS, TOKEN_TTL};
use util::{error, query_pairs, respond, Resp};

use crate::shared::Shared;

/// Serve one Swift request.
pub async fn handle(gw: &Arc<Shared>, req: http::Request<s3s::Body>) -> Resp {
    let mut resp = route(gw, req).await;
    // Swift's request id (clients log it).
    let id = format!(
        "tx{:021x}-{:010x}",
        rand::random::<u128>() & ((1 << 84) - 1),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-trans-id", v.clone());
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

async fn route(gw: &Arc<Shared>, req: http::Request<s3s::Body>) -> Resp {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/info" => return info(gw, req.method()),
        "/auth/v1.0" | "/auth/v1" | "/auth/v1.0/" | "/auth/v1/" => {
            return if req.method() == Method::GET {
                auth::login(gw, &req)
            } else {
                error(StatusCode::METHOD_NOT_ALLOWED, None)
            }
        }
        _ => {}
    }
    let p = match util::parse_path(&path) {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::NOT_FOUND => return error(e.status, None),
        Err(e) => return error(e.status, Some(e.msg)),
    };
    if let Err(r) = auth::check(gw, req.headers(), &p.account) {
        return r;
    }
    let q = query_pairs(req.uri().query());
    let method = req.method().clone();
    let head = method == Method::HEAD;
    match (p.container, p.object) {
        (None, _) => match method.as_str() {
            "GET" | "HEAD" => container::account(gw, &q, req.headers(), head).await,
            _ => error(StatusCode::METHOD_NOT_ALLOWED, None),
        },
        (Some(c), None) => match method.as_str() {
            "GET" | "HEAD" => container::get(gw, c, &q, req.headers(), head).await,
            "PUT" => container::put(gw, c).await,
            "DELETE" => container::delete(gw, c).await,
            "POST" => container::post(gw, c, req.headers()).await,
            _ => error(StatusCode::METHOD_NOT_ALLOWED, None),
        },
        (Some(c), Some(o)) => object_request(gw, c, o, req, &q).await,
    }
}

async fn object_request(
    gw: &Arc<Shared>,
    c: String,
    o: String,
    req: http::Request<s3s::Body>,
    q: &[(String, String)],
) -> Resp {
    if !object::is_object_method(req.method()) {
        return error(StatusCode::METHOD_NOT_ALLOWED, None);
    }
    if util::query_get(q, "multipart-manifest").is_some_and(|v| v != "get") {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            Some("static large objects are not served by the FaaSCache gateway"),
        );
    }
    if req.headers().contains_key("destination-account")
        || req.headers().contains_key("x-copy-from-account")
    {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            Some("copies between accounts are not served by the FaaSCache gateway"),
        );
    }
    match req.method().as_str() {
        "GET" => object::get(gw, c, o, req.headers(), false).await,
        "HEAD" => object::get(gw, c, o, req.headers(), true).await,
        "PUT" => object::put(gw, c, o, req).await,
        "DELETE" => object::delete(gw, c, o).await,
        "POST" => object::post(gw, c, o, req.headers()).await,
        _ => object::copy_method(gw, c, o, req.headers()).await,
    }
}

/// `GET /info`: the capabilities python-swiftclient asks for (no large-object or bulk
/// middleware, so clients upload objects whole and delete them one by one).
fn info(gw: &Shared, method: &Method) -> Resp {
    gw.ops.count("SwiftInfo");
    if method != Method::GET && method != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, None);
    }
    let body = serde_json::json!({
        "swift": {
            "version": "2.30.0",
            "max_file_size": gw.budget.limit(),
            "container_listing_limit": container::LISTING_LIMIT,
            "account_listing_limit": container::LISTING_LIMIT,
            "max_object_name_length": util::MAX_OBJECT_NAME,
            "max_container_name_length": util::MAX_CONTAINER_NAME,
            "max_meta_overall_size": faascache_objstore::MAX_USER_META_BYTES,
        },
        "tempauth": { "account_acls": false },
    })
    .to_string();
    respond(
        StatusCode::OK,
        &[
            (
                "content-type",
                "application/json; charset=UTF-8".to_string(),
            ),
            ("content-length", body.len().to_string()),
        ],
        if method == Method::HEAD {
            s3s::Body::empty()
        } else {
            s3s::Body::from(body)
        },
    )
}
