-- Argo CD health check for binauthz.dev/BinAuthzBinding.
--
-- Install as `resource.customizations.health.binauthz.dev_BinAuthzBinding` in argocd-cm
-- (argocd-cm-patch.yaml embeds this file; docs/deploy.md shows how). Argo CD runs it with
-- the live object in the global `obj` and reads back {status, message}.
--
-- In this order:
--   Suspended    spec.suspend is true
--   Progressing  no status yet, or status (or Ready) older than metadata.generation
--   Suspended    Ready has reason Suspended
--   Progressing  Reconciling=True
--   Healthy      Ready=True: every matched Cloud Run resource carries the policy
--   Degraded     Stalled=True or Ready=False, with that condition's reason and message
--   Progressing  otherwise (Ready missing or Unknown)
--
-- Written for Argo CD's Lua (5.1 semantics); tests/fixtures/argocd/ holds the samples.

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

if spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: spec.suspend is true; the operator makes no Cloud Run calls for this binding"
  return hs
end

if status == nil or status.observedGeneration == nil then
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

if ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready, "Suspended: the operator makes no Cloud Run calls for this binding")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Remediation in progress")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Every matched Cloud Run resource complies")
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, describe(ready, "Stalled: needs a human"))
  return hs
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
