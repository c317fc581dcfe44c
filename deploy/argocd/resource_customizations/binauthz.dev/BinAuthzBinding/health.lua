-- Argo CD health check for binauthz.dev/BinAuthzBinding.
--
-- Install as `resource.customizations.health.binauthz.dev_BinAuthzBinding` in argocd-cm
-- (deploy/argocd/argocd-cm-patch.yaml embeds this file; docs/deploy.md shows how). Argo CD
-- runs it with the live object in the global `obj` and reads back {status, message}.
-- This directory has Argo CD's resource_customizations layout (health_test.yaml, testdata/)
-- so that it can be contributed upstream as it is.
--
-- It answers what Flux's kstatus computes for the same object (README, "Flux health
-- checks"): Healthy or Suspended where kstatus says Current, Progressing for InProgress,
-- Degraded for Failed. In this order:
--   Progressing  not checked yet (no status, or the CRD's default observedGeneration -1),
--                or the status (or its Ready) describes an older generation
--   Suspended    spec.suspend is true, or a condition has reason Suspended
--   Progressing  Reconciling=True: remediations in flight
--   Degraded     Stalled=True: nothing changes without a person
--   Healthy      Ready=True: every matched Cloud Run resource carries the policy
--   Progressing  otherwise: Ready False (the operator retries), Unknown or missing
--
-- Written for Argo CD's Lua (5.1 semantics).

local function condition(status, condition_type)
  if status == nil or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == condition_type then
      return c
    end
  end
  return nil
end

local function any_reason(status, reason)
  if status == nil or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.reason == reason then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil or c.message == nil or c.message == "" then
    return fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.message
end

local function older_than(observed, generation)
  return observed ~= nil and generation ~= nil and observed < generation
end

local hs = {}
local spec = obj.spec or {}
local status = obj.status
local generation = (obj.metadata or {}).generation
local ready = condition(status, "Ready")
local reconciling = condition(status, "Reconciling")
local stalled = condition(status, "Stalled")

if status == nil or status.observedGeneration == nil or status.observedGeneration < 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check this binding"
  return hs
end

if older_than(status.observedGeneration, generation)
  or (ready ~= nil and older_than(ready.observedGeneration, generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check generation " .. tostring(generation)
  return hs
end

local suspended = any_reason(status, "Suspended")
if spec.suspend == true or suspended ~= nil then
  hs.status = "Suspended"
  hs.message = describe(suspended, "Suspended: spec.suspend is true; the operator makes no Cloud Run calls for this binding")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Remediation in progress")
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, describe(ready, "Stalled: needs a person"))
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Every matched Cloud Run resource complies")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
