//! The estate's bookkeeping, unit-tested.

use super::*;

#[test]
fn etag_round_trips_its_version() {
    let body = Map::new();
    let resource = Resource::new(
        Kind::Service,
        "p",
        "us-central1",
        "s",
        Timestamp::UNIX_EPOCH,
        body,
    );
    let etag = resource.body()["etag"].as_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert_eq!(etag_version(&etag), Some(resource.version()));
    assert_eq!(etag_version("garbage"), None);
}

#[test]
fn changed_fields_are_leaf_paths_without_output_fields() {
    let old = json!({"generation": "1", "labels": {"a": "1"}, "binaryAuthorization": {"useDefault": true}});
    let new =
        json!({"generation": "2", "labels": {"a": "1"}, "binaryAuthorization": {"policy": "x"}});
    let fields = changed_fields(
        Kind::Service,
        old.as_object().unwrap(),
        new.as_object().unwrap(),
    );
    assert_eq!(
        fields,
        [
            "binaryAuthorization.policy",
            "binaryAuthorization.useDefault"
        ]
    );
}

#[test]
fn set_image_creates_the_template_path_for_each_kind() {
    let mut body = Map::new();
    Kind::Job.set_image(&mut body, "img:1");
    assert_eq!(Kind::Job.image(&body), Some("img:1"));
    assert_eq!(
        body["template"]["template"]["containers"][0]["image"],
        "img:1"
    );
    let mut body = Map::new();
    Kind::Service.set_image(&mut body, "img:2");
    assert_eq!(body["template"]["containers"][0]["image"], "img:2");
}
