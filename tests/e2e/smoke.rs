//! The end-to-end harness itself: a real etcd + kube-apiserver start for this
//! test binary (scripts/envtest.sh), a client and kubectl reach it.

use crate::support::envtest;

use k8s_openapi::api::core::v1::Namespace;

#[tokio::test]
async fn control_plane_starts_and_lists_namespaces() {
    let Some(cp) = envtest::control_plane_or_skip().await else {
        return;
    };

    let api: kube::Api<Namespace> = kube::Api::all(cp.client().await);
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .expect("listing namespaces")
        .items
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    assert!(
        names.iter().any(|n| n == "default"),
        "no default namespace in {names:?}"
    );

    let ns = cp.fresh_namespace().await;
    let out = cp.kubectl_ok(["get", "namespace", &ns, "-o", "name"]);
    assert_eq!(out.trim(), format!("namespace/{ns}"));
}
