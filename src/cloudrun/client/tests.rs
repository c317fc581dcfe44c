//! Unit tests of the client's helpers.

use std::time::Duration;

use super::operations::proto_duration;
use super::transport::check_segments;
use super::USER_AGENT;

#[test]
fn ids_that_would_break_the_url_are_refused() {
    let target = || "GetService x".to_owned();
    assert!(check_segments(target, &[("project", "example.com:acme-prod")]).is_ok());
    assert!(check_segments(target, &[("project", "123456789")]).is_ok());
    for bad in ["", ".", "..", "a/b", "a?b", "a b", "..%2f"] {
        let err = check_segments(target, &[("resource", bad)]).unwrap_err();
        assert_eq!(err.reason(), "InvalidArgument", "{bad:?}");
        assert!(err
            .to_string()
            .contains("is not a valid Google resource id"));
    }
}

#[test]
fn wait_timeouts_are_protobuf_durations() {
    assert_eq!(proto_duration(Duration::from_secs(10)), "10s");
    assert_eq!(proto_duration(Duration::from_millis(2500)), "2.500000000s");
}

#[test]
fn the_user_agent_names_the_operator_and_its_version() {
    assert_eq!(
        USER_AGENT,
        format!("binauthz-operator/{}", env!("CARGO_PKG_VERSION"))
    );
}
