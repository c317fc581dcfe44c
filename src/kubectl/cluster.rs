//! The plugin's side of the cluster: the user's kubeconfig, context and namespace, the bindings API, and Kubernetes errors as one line that says what to do.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::api::BinAuthzBinding;
use crate::error_line::error_line;

use super::why::ResourceNameError;

/// The group/version bindings are served under (for the CRD check).
const GROUP_VERSION: &str = "binauthz.dev/v1alpha1";
/// The plural of bindings.
const PLURAL: &str = "binauthzbindings";

/// How to reach the cluster, as kubectl spells it. Flags go before or after the command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Kubeconfig file(s) to use (a list separated like PATH, as in KUBECONFIG); default
    /// ~/.kube/config, else the in-cluster service account.
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<String>,

    /// The kubeconfig context to use (default: its current-context).
    #[arg(
        long,
        global = true,
        env = "BINAUTHZ_KUBECTL_CONTEXT",
        value_name = "NAME"
    )]
    pub context: Option<String>,

    /// The namespace: of the binding to act on (default: the context's namespace); for
    /// `status` and `why`, only this namespace's bindings (default: every namespace).
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "BINAUTHZ_KUBECTL_NAMESPACE",
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,

    /// Every namespace (the default of `status` and `why`; kept for kubectl habits).
    #[arg(
        short = 'A',
        long,
        global = true,
        env = "BINAUTHZ_KUBECTL_ALL_NAMESPACES"
    )]
    pub all_namespaces: bool,
}

/// A connected client with the namespace choices of the command line resolved.
pub(super) struct Cluster {
    pub(super) client: Client,
    /// `-n`, if given.
    pub(super) namespace: Option<String>,
    /// The context's namespace (`default` when it names none).
    pub(super) default_namespace: String,
    /// The API server, for messages.
    pub(super) url: String,
}

impl Cluster {
    /// Bindings of `-n`, or of every namespace.
    pub(super) fn bindings_in_scope(&self) -> Api<BinAuthzBinding> {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// The namespace a named binding is looked up in: `-n`, else the context's.
    pub(super) fn binding_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.default_namespace)
    }

    /// Bindings of the namespace named bindings are looked up in.
    pub(super) fn bindings_here(&self) -> Api<BinAuthzBinding> {
        Api::namespaced(self.client.clone(), self.binding_namespace())
    }

    /// Lists the bindings in scope, every page.
    pub(super) async fn list_bindings(&self) -> Result<Vec<BinAuthzBinding>, KubectlError> {
        let list = self
            .bindings_in_scope()
            .list(&kube::api::ListParams::default())
            .await;
        match list {
            Ok(list) => Ok(list.items),
            Err(err) => Err(self.error(err, Action::List, None).await),
        }
    }

    /// Lists the exceptions in scope; none when the exception CRD is not installed or the
    /// caller may not read them (the explanation then says nothing of exceptions, as
    /// `why`'s documentation warns).
    pub(super) async fn list_exceptions(
        &self,
    ) -> Result<Vec<crate::api::BinAuthzException>, KubectlError> {
        let api: Api<crate::api::BinAuthzException> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        match api.list(&kube::api::ListParams::default()).await {
            Ok(list) => Ok(list.items),
            Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => Ok(Vec::new()),
            Err(err) => Err(self.error(err, Action::List, None).await),
        }
    }

    /// The grants and namespace labels as the controller decides tenancy from them. Grants
    /// that cannot be read (no CRD, no permission) count as none; namespaces that cannot be
    /// listed are known by name only.
    pub(super) async fn tenancy(&self) -> crate::fleet::Tenancy {
        use kube::ResourceExt;
        let params = kube::api::ListParams::default();
        let grants = Api::<crate::api::BinAuthzTenancy>::all(self.client.clone())
            .list(&params)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let grants = crate::plan::Grants::new(grants.iter().map(|g| crate::plan::Grant {
            name: g.name_any(),
            spec: g.spec.clone(),
        }));
        let labels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
            Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
                .list_metadata(&params)
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .map(|ns| (ns.name_any(), ns.labels().clone()))
                        .collect()
                })
                .unwrap_or_default();
        crate::fleet::Tenancy {
            grants,
            labels: std::sync::Arc::new(move |name: &str| labels.get(name).cloned()),
        }
    }

    /// Whether the API server serves the bindings resource (discovery; every
    /// authenticated user may read it).
    async fn crd_served(&self) -> Option<bool> {
        match self.client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) => Some(list.resources.iter().any(|r| r.name == PLURAL)),
            Err(kube::Error::Api(status)) if status.code == 404 => Some(false),
            Err(_) => None,
        }
    }

    /// One line for a failed request about `binding` (or the bindings in scope).
    pub(super) async fn error(
        &self,
        err: kube::Error,
        action: Action,
        binding: Option<&str>,
    ) -> KubectlError {
        let scope = match (binding, &self.namespace) {
            (Some(name), _) => Scope::Binding {
                namespace: self.binding_namespace().to_owned(),
                name: name.to_owned(),
            },
            (None, Some(ns)) => Scope::Namespace(ns.clone()),
            (None, None) => Scope::AllNamespaces,
        };
        match err {
            kube::Error::Api(status) => match status.code {
                401 => KubectlError::Unauthorized {
                    url: self.url.clone(),
                },
                403 => KubectlError::Forbidden {
                    action,
                    scope,
                    detail: status.message,
                },
                // A missing binding is a Status 404; so is every request when the CRD is
                // not installed (a plain-text 404): discovery tells them apart.
                404 => match (self.crd_served().await, scope) {
                    (Some(true) | None, Scope::Binding { namespace, name }) => {
                        KubectlError::BindingNotFound { namespace, name }
                    }
                    _ => KubectlError::CrdNotInstalled {
                        url: self.url.clone(),
                    },
                },
                _ => KubectlError::Api {
                    action,
                    scope,
                    detail: format!("{} {}: {}", status.code, status.reason, status.message),
                },
            },
            other => KubectlError::Unreachable {
                url: self.url.clone(),
                detail: error_line(&other),
            },
        }
    }
}

impl ClusterArgs {
    /// Loads the kubeconfig (`--kubeconfig`/`KUBECONFIG` — several files are merged the way
    /// kubectl merges them —, else `~/.kube/config`, else in-cluster), selects the context,
    /// and builds a client. Nothing is sent to the API server yet.
    pub(super) async fn connect(self) -> Result<Cluster, KubectlError> {
        let ClusterArgs {
            kubeconfig,
            context,
            namespace,
            all_namespaces: _,
        } = self;
        let options = KubeConfigOptions {
            context: context.clone(),
            cluster: None,
            user: None,
        };
        let config_error = |detail: String| KubectlError::KubeConfig {
            detail,
            context: context.clone(),
        };
        let config = match kubeconfig.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(paths) => {
                let merged = std::env::split_paths(paths)
                    .filter(|p| !p.as_os_str().is_empty())
                    .try_fold(Kubeconfig::default(), |merged, path: PathBuf| {
                        Kubeconfig::read_from(&path).and_then(|next| merged.merge(next))
                    })
                    .map_err(|e| config_error(error_line(&e)))?;
                Config::from_custom_kubeconfig(merged, &options)
                    .await
                    .map_err(|e| config_error(error_line(&e)))?
            }
            None if context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| config_error(error_line(&e)))?,
            None => Config::infer()
                .await
                .map_err(|e| config_error(error_line(&e)))?,
        };
        let url = config.cluster_url.to_string();
        let default_namespace = config.default_namespace.clone();
        let client = Client::try_from(config).map_err(|err| KubectlError::Unreachable {
            url: url.clone(),
            detail: error_line(&err),
        })?;
        Ok(Cluster {
            client,
            namespace: namespace.filter(|ns| !ns.trim().is_empty()),
            default_namespace,
            url,
        })
    }
}

/// What the plugin was doing when a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reading one binding.
    Get,
    /// Listing bindings.
    List,
    /// Patching a binding.
    Patch,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Patch => "patch",
        }
    }

    /// The role that grants it: reading is in the viewer role (and the built-in `view`),
    /// patching in the editor role (and `edit`), both from deploy/tenancy.
    fn role(self) -> &'static str {
        match self {
            Self::Get | Self::List => "binauthz-binding-viewer (or the built-in view role)",
            Self::Patch => "binauthz-binding-editor (or the built-in edit role)",
        }
    }
}

/// Which bindings a failed request was about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One binding.
    Binding {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The bindings of one namespace.
    Namespace(String),
    /// The bindings of every namespace.
    AllNamespaces,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Binding { namespace, name } => {
                write!(f, "binding {name} in namespace {namespace}")
            }
            Self::Namespace(ns) => write!(f, "bindings in namespace {ns}"),
            Self::AllNamespaces => f.write_str("bindings in all namespaces"),
        }
    }
}

/// Where a person should be granted a role for `scope`.
fn grant_where(scope: &Scope) -> String {
    match scope {
        Scope::Binding { namespace, .. } | Scope::Namespace(namespace) => {
            format!("bound in namespace {namespace}")
        }
        Scope::AllNamespaces => {
            "bound cluster-wide, or pass -n NAMESPACE to look at one namespace".to_owned()
        }
    }
}

/// Everything the plugin can fail with. Display is one line: what failed, on which
/// binding or namespace, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    /// No usable kubeconfig (or context), and not in a cluster.
    #[error("cannot load a Kubernetes configuration{}: {detail} (point --kubeconfig or KUBECONFIG at a kubeconfig, or pick a context with --context)", context.as_deref().map(|c| format!(" for context {c}")).unwrap_or_default())]
    KubeConfig {
        /// What kube said.
        detail: String,
        /// `--context`, if given.
        context: Option<String>,
    },
    /// The API server does not answer.
    #[error("cannot reach the Kubernetes API server at {url}: {detail} (check --context / KUBECONFIG and that the cluster is up)")]
    Unreachable {
        /// The server.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The API server refused the credentials.
    #[error("the Kubernetes API server at {url} refused your credentials (401 Unauthorized): log in again or fix the kubeconfig's user")]
    Unauthorized {
        /// The server.
        url: String,
    },
    /// RBAC refused the request.
    #[error("forbidden to {} {scope}: {detail}; ask a cluster admin for the role {} {}", action.verb(), action.role(), grant_where(scope))]
    Forbidden {
        /// What was refused.
        action: Action,
        /// On what.
        scope: Scope,
        /// The API server's message (names the user).
        detail: String,
    },
    /// The named binding does not exist.
    #[error("binding {name} not found in namespace {namespace}: `kubectl binauthz status -n {namespace}` lists its bindings (or pass -n NAMESPACE)")]
    BindingNotFound {
        /// Where it was looked up.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The CRD is not installed.
    #[error("the cluster at {url} does not serve BinAuthzBindings (the CRD {PLURAL}.binauthz.dev is not installed): install it with `binauthz-operator crd | kubectl apply -f -`, or check --context")]
    CrdNotInstalled {
        /// The server.
        url: String,
    },
    /// Another answer of the API server.
    #[error("cannot {} {scope}: {detail}", action.verb())]
    Api {
        /// What was tried.
        action: Action,
        /// On what.
        scope: Scope,
        /// The answer.
        detail: String,
    },
    /// `why`'s argument is not a Cloud Run resource name.
    #[error(transparent)]
    ResourceName(#[from] ResourceNameError),
    /// `why --label` is not `KEY=VALUE`.
    #[error("--label {0:?} is not KEY=VALUE (e.g. --label env=prod)")]
    Label(String),
    /// `why --live` could not read the resource.
    #[error("cannot read {resource} from Cloud Run (--live): {detail}")]
    CloudRun {
        /// The resource name.
        resource: String,
        /// The client's one-line error.
        detail: String,
    },
    /// `reconcile --wait` ran out of time.
    #[error("binding {name} in namespace {namespace}: the controller did not handle the reconcile request within {waited}; is the operator running and watching this namespace? (its logs: kubectl -n binauthz-system logs deploy/binauthz-operator)")]
    WaitTimeout {
        /// The binding's namespace.
        namespace: String,
        /// The binding.
        name: String,
        /// How long it waited (`2s`, `90s`, `500ms`).
        waited: String,
    },
    /// The output could not be written or encoded.
    #[error("cannot write the output: {0}")]
    Output(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_the_binding_the_role_and_where_to_bind_it() {
        let err = KubectlError::Forbidden {
            action: Action::Patch,
            scope: Scope::Binding {
                namespace: "team-a".into(),
                name: "web".into(),
            },
            detail: "User \"bob\" cannot patch resource \"binauthzbindings\"".into(),
        };
        assert_eq!(
            err.to_string(),
            "forbidden to patch binding web in namespace team-a: User \"bob\" cannot patch resource \"binauthzbindings\"; ask a cluster admin for the role binauthz-binding-editor (or the built-in edit role) bound in namespace team-a"
        );
        let err = KubectlError::Forbidden {
            action: Action::List,
            scope: Scope::AllNamespaces,
            detail: "no".into(),
        };
        assert!(err.to_string().contains("pass -n NAMESPACE"), "{err}");
    }

    #[test]
    fn every_message_is_one_line() {
        let errors = [
            KubectlError::KubeConfig {
                detail: "no file".into(),
                context: Some("prod".into()),
            },
            KubectlError::Unreachable {
                url: "https://10.0.0.1/".into(),
                detail: "connection refused".into(),
            },
            KubectlError::BindingNotFound {
                namespace: "a".into(),
                name: "b".into(),
            },
            KubectlError::CrdNotInstalled {
                url: "https://10.0.0.1/".into(),
            },
            KubectlError::WaitTimeout {
                namespace: "a".into(),
                name: "b".into(),
                waited: "2m".into(),
            },
        ];
        for err in errors {
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(!text.contains("Error {"), "{text}");
        }
    }
}
