//! Errors as the operator prints them: one line, each cause once.

/// An error and its causes on one line (`outer: cause: root cause`), a cause whose text
/// the line already holds left out, newlines flattened.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// One line for a Kubernetes client error: for an API answer its code, reason and message
/// (kube's own Display of API errors repeats the whole status as a debug dump).
pub fn kube_error_line(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => error_line(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle says: inner\nfailed")]
    struct Middle(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner\nfailed")]
    struct Inner;

    #[test]
    fn causes_follow_once_on_one_line() {
        assert_eq!(
            error_line(&Outer(Middle(Inner))),
            "outer: middle says: inner failed"
        );
    }

    #[test]
    fn an_api_error_is_its_code_reason_and_message() {
        let err = kube::Error::Api(Box::new(
            kube::core::Status::failure("bindings is forbidden", "Forbidden").with_code(403),
        ));
        assert_eq!(
            kube_error_line(&err),
            "403 Forbidden: bindings is forbidden"
        );
    }
}
