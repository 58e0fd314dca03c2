//! Small responses: FastAPI's `{"detail": …}` errors (what the API's clients already parse),
//! and the headers every response carries.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, ResponseBody};

/// `{"detail": message}` with `status`, as FastAPI's `HTTPException` answers.
pub fn detail(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let text = serde_json::json!({ "detail": message }).to_string();
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// 503 with `Retry-After`: busy, not broken.
pub fn retry_later(message: &str) -> Response<ResponseBody> {
    let mut resp = detail(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    resp
}

/// 405 naming the methods every route answers.
pub fn method_not_allowed() -> Response<ResponseBody> {
    let mut resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// A body with its content type, not cached (status, metrics and the page change every run).
pub fn fresh(
    content_type: &'static str,
    body: String,
    status: StatusCode,
) -> Response<ResponseBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Headers on every response: no content sniffing.
pub fn finish(mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
