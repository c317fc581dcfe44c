// Wrapper module: builds the etcd server binary from go.etcd.io/etcd/server/v3
// (its root package is main). Built by scripts/envtest.sh.
module binauthz-operator/envtest/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
