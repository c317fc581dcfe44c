//! A real kube-apiserver + etcd (scripts/envtest.sh) and the operator's controller as a
//! separate process against it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binauthz_operator::api::{self, BinAuthzBinding};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};
use tokio::process::{Child, Command};

const FIELD_MANAGER: &str = "binauthz-bench";

/// A control plane started by `scripts/envtest.sh start`; stopped by [`ControlPlane::stop`]
/// (and by the script's watchdog when this process exits, however it exits).
pub struct ControlPlane {
    script: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
    client: Client,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver in `dir` and installs the BinAuthzBinding CRD.
    pub async fn start(repo: &Path, dir: &Path) -> Result<Self> {
        let script = repo.join("scripts/envtest.sh");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let out = Command::new(&script)
            .args(["start", "--dir"])
            .arg(dir)
            .args(["--owner-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("running scripts/envtest.sh start")?;
        if !out.status.success() {
            bail!("scripts/envtest.sh start failed ({})", out.status);
        }
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).context("reading the envtest kubeconfig")?,
            &KubeConfigOptions::default(),
        )
        .await
        .context("loading the envtest kubeconfig")?;
        let client = Client::try_from(config).context("building a Kubernetes client")?;
        let plane = Self {
            script,
            dir: dir.to_path_buf(),
            kubeconfig,
            client,
        };
        plane.install_crd().await?;
        Ok(plane)
    }

    /// The kubeconfig the controller uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    async fn install_crd(&self) -> Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = api::crd();
        let name = crd.metadata.name.clone().context("the CRD has no name")?;
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("applying the CRD")?;
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds, &name, conditions::is_crd_established()),
        )
        .await
        .context("the CRD was not Established within 60 s")?
        .context("waiting for the CRD")?;
        Ok(())
    }

    /// Creates `namespace` (idempotent).
    pub async fn namespace(&self, namespace: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(namespace.to_string());
        api.patch(
            namespace,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&ns),
        )
        .await
        .with_context(|| format!("creating namespace {namespace}"))?;
        Ok(())
    }

    /// Applies bindings (server-side apply), each into its own namespace.
    pub async fn apply(&self, bindings: &[BinAuthzBinding]) -> Result<()> {
        for b in bindings {
            let ns = b.metadata.namespace.as_deref().unwrap_or("default");
            let name = b
                .metadata
                .name
                .as_deref()
                .context("a binding without a name")?;
            let api: Api<BinAuthzBinding> = Api::namespaced(self.client.clone(), ns);
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(b),
            )
            .await
            .with_context(|| format!("applying binding {ns}/{name}"))?;
        }
        Ok(())
    }

    /// The bindings of `namespace` as stored (with their status).
    pub async fn bindings(&self, namespace: &str) -> Result<Vec<BinAuthzBinding>> {
        let api: Api<BinAuthzBinding> = Api::namespaced(self.client.clone(), namespace);
        Ok(api
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing bindings in {namespace}"))?
            .items)
    }

    /// How many bindings of `namespace` report Ready=True for their current generation.
    pub async fn ready_count(&self, namespace: &str) -> Result<usize> {
        Ok(self
            .bindings(namespace)
            .await?
            .iter()
            .filter(|b| is_ready(b))
            .count())
    }

    /// Waits until `count` bindings of `namespace` report Ready=True for their current
    /// generation, polling every second; an error after `limit`.
    pub async fn wait_ready(&self, namespace: &str, count: usize, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.ready_count(namespace).await? >= count {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!(
                    "not every binding of {namespace} was Ready within {} s",
                    limit.as_secs()
                );
            }
        }
    }

    /// Stops etcd and kube-apiserver.
    pub async fn stop(self) -> Result<()> {
        let status = Command::new(&self.script)
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status()
            .await
            .context("running scripts/envtest.sh stop")?;
        if !status.success() {
            bail!("scripts/envtest.sh stop failed ({status})");
        }
        Ok(())
    }
}

/// Ready=True, computed for the binding's current generation.
pub fn is_ready(b: &BinAuthzBinding) -> bool {
    let Some(status) = &b.status else {
        return false;
    };
    let current = status.observed_generation == b.metadata.generation;
    current
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether `bin` has the `controller` subcommand (it lands on its own branch).
pub async fn has_controller(bin: &Path) -> bool {
    Command::new(bin)
        .args(["controller", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// A running `binauthz-operator controller` (killed when dropped).
pub struct Controller {
    child: Child,
    pid: u32,
    metrics: String,
}

impl Controller {
    /// Starts the controller against `kubeconfig` and the Cloud Run endpoint `cloud_run`,
    /// watching `namespace` only, with extra flags; logs go to `log`. Returns once
    /// `/readyz` answers 200.
    pub async fn start(
        bin: &Path,
        kubeconfig: &Path,
        cloud_run: &str,
        namespace: &str,
        extra: &[String],
        log: &Path,
    ) -> Result<Self> {
        Self::start_with_env(bin, kubeconfig, cloud_run, namespace, extra, &[], log).await
    }

    /// [`Controller::start`] with extra environment variables.
    pub async fn start_with_env(
        bin: &Path,
        kubeconfig: &Path,
        cloud_run: &str,
        namespace: &str,
        extra: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self> {
        let port = free_port()?;
        let metrics = format!("127.0.0.1:{port}");
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let child = Command::new(bin)
            .arg("controller")
            .args(["--namespace", namespace, "--metrics-addr", &metrics])
            .args(["--cloud-run-endpoint", cloud_run])
            .args(extra)
            .envs(env.iter().copied())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", "binauthz-bench")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} controller", bin.display()))?;
        let pid = child.id().context("the controller exited at once")?;
        let mut controller = Self {
            child,
            pid,
            metrics,
        };
        controller.wait_ready(log).await?;
        Ok(controller)
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.metrics);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the controller exited ({status}); see {}", log.display());
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the controller was not ready within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .context("scraping the controller's /metrics")?
            .text()
            .await
            .context("reading the controller's /metrics")
    }

    /// The value of one sample of `/metrics`, e.g.
    /// `binauthz_passes_total{result="completed"}` (0 when absent).
    pub async fn metric(&self, sample: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix(sample))
            .filter_map(|rest| rest.strip_prefix(' '))
            .filter_map(|value| value.split_whitespace().next()?.parse::<f64>().ok())
            .sum())
    }

    /// Stops the process.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("stopping the controller")
    }
}

/// A loopback port free right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
