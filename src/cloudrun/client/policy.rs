//! Policy reads: whether a platform policy exists, and the organization policy a project inherits.

use std::time::Instant;

use serde_json::Value;
use tracing::{debug, info};

use super::transport::{check_segments, lock};
use super::{Call, CloudRunClient, PolicyCheck, BCID_MANAGED_POLICY};
use crate::cloudrun::error::Result;
use crate::cloudrun::observe::ApiMethod;
use crate::cloudrun::orgpolicy::{EffectivePolicy, OrgPolicyConstraint, ALLOWED_BINAUTHZ_POLICIES};
use crate::policy::PolicyName;

impl CloudRunClient {
    /// Whether the named Cloud Run platform policy exists (Binary Authorization API):
    /// [`CloudRunClient::policy_check`] as a yes/no — Google's managed policy counts as
    /// existing, and a policy that cannot be verified is the error that says why.
    pub async fn policy_exists(&self, policy: &PolicyName) -> Result<bool> {
        match self.policy_check(policy).await? {
            PolicyCheck::Exists | PolicyCheck::GoogleManaged => Ok(true),
            PolicyCheck::NotFound => Ok(false),
            PolicyCheck::Unverifiable { error } => Err(error),
        }
    }

    /// What can be known about the named Cloud Run platform policy before writing it
    /// (Binary Authorization API `GET v1/{policy}`); cached for `policy_ttl`, whichever the
    /// answer:
    /// - Google's managed policy ([`BCID_MANAGED_POLICY`]) is never read (customers cannot):
    ///   [`PolicyCheck::GoogleManaged`];
    /// - 200: [`PolicyCheck::Exists`]; 404: [`PolicyCheck::NotFound`];
    /// - 403: [`PolicyCheck::Unverifiable`] carrying the error — Binary Authorization
    ///   answers 403 for a policy in a project the caller may not read, whether or not it
    ///   exists ("... (or resource may not exist)"), so the write may still be right. Every
    ///   403 counts (a missing permission, the API disabled, a VPC Service Controls
    ///   perimeter); [`Error::failure`] of the carried error tells which.
    ///
    /// # Errors
    /// Any other failure (after retries), e.g. the API unreachable or credentials refused.
    pub async fn policy_check(&self, policy: &PolicyName) -> Result<PolicyCheck> {
        if policy.as_str() == BCID_MANAGED_POLICY {
            return Ok(PolicyCheck::GoogleManaged);
        }
        let ttl = self.inner.config.policy_ttl;
        if let Some((at, check)) = lock(&self.inner.policies).get(policy.as_str()) {
            if at.elapsed() < ttl {
                return Ok(check.clone());
            }
        }
        let result: Result<Value> = self
            .execute(Call {
                method: ApiMethod::GetPlatformPolicy,
                verb: reqwest::Method::GET,
                url: format!(
                    "{}/v1/{}",
                    self.inner.config.binauthz_base_url,
                    policy.as_str()
                ),
                query: Vec::new(),
                body: None,
                budget: None,
                prepaid: None,
                project: policy.project(),
                location: "global",
                resource: policy.as_str().to_owned(),
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await;
        let check = match result {
            Ok(_) => PolicyCheck::Exists,
            Err(err) if err.is_not_found() => PolicyCheck::NotFound,
            Err(err) if err.is_permission_denied() => {
                info!(policy = %policy, error = %err, "cannot read the policy; it cannot be verified");
                PolicyCheck::Unverifiable { error: err }
            }
            Err(err) => return Err(err),
        };
        lock(&self.inner.policies)
            .insert(policy.as_str().to_owned(), (Instant::now(), check.clone()));
        Ok(check)
    }

    /// The effective organization policy constraint
    /// `constraints/run.allowedBinaryAuthorizationPolicies` of `project` (Organization
    /// Policy API v2 `getEffectivePolicy`, see [`super::orgpolicy`]); cached for
    /// `orgpolicy_ttl`. Errors are not cached.
    ///
    /// # Errors
    /// As every call: 403 (no `orgpolicy.policy.get`, or the API disabled) is
    /// [`Error::PermissionDenied`] — callers proceed and let the write's answer decide.
    pub async fn effective_org_policy(&self, project: &str) -> Result<OrgPolicyConstraint> {
        let ttl = self.inner.config.orgpolicy_ttl;
        if let Some((at, constraint)) = lock(&self.inner.org_policies).get(project) {
            if at.elapsed() < ttl {
                return Ok(constraint.clone());
            }
        }
        let name = format!("projects/{project}/policies/{ALLOWED_BINAUTHZ_POLICIES}");
        check_segments(
            || format!("{} {name}", ApiMethod::GetEffectiveOrgPolicy),
            &[("project", project)],
        )?;
        let policy: EffectivePolicy = self
            .execute(Call {
                method: ApiMethod::GetEffectiveOrgPolicy,
                verb: reqwest::Method::GET,
                url: format!(
                    "{}/v2/{name}:getEffectivePolicy",
                    self.inner.config.orgpolicy_base_url
                ),
                query: Vec::new(),
                body: None,
                budget: None,
                prepaid: None,
                project,
                location: "global",
                resource: name,
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await?;
        let constraint = OrgPolicyConstraint::from_effective(&policy);
        debug!(%project, %constraint, "organization policy read");
        lock(&self.inner.org_policies)
            .insert(project.to_owned(), (Instant::now(), constraint.clone()));
        Ok(constraint)
    }
}
