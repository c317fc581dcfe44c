-- Runs an Argo CD health script against the cases of its health_test.yaml and checks each
-- answer, the way Argo CD's own resource_customizations tests do (status and message
-- exactly equal).
--
--   lua scripts/argocd-health-test.lua HEALTH.lua CASES.json
--
-- CASES.json is health_test.yaml with each input object inlined (scripts/lint-deploy.sh
-- writes it; Lua has no YAML reader): a list of {inputPath, status, message, object}.
-- The script runs the way Argo CD runs it: its chunk is executed with the object in the
-- global `obj` and only the libraries Argo CD offers (base functions, string, table,
-- math); it must return {status = ..., message = ...}. Each of Healthy, Progressing,
-- Degraded and Suspended must be expected at least once. Exits 1 on any failure.

local json = require("dkjson")

local STATUSES = { Healthy = true, Progressing = true, Degraded = true, Suspended = true,
                   Missing = true, Unknown = true }

local function read(path)
  local f, err = io.open(path, "r")
  if not f then
    io.stderr:write("error: cannot read " .. tostring(err) .. "\n")
    os.exit(1)
  end
  local text = f:read("*a")
  f:close()
  return text
end

-- Compile the script once per object with its own environment (Lua 5.1 and 5.2+).
local function run(source, name, object)
  local env = { obj = object, ipairs = ipairs, pairs = pairs, next = next, type = type,
                tostring = tostring, tonumber = tonumber, select = select, error = error,
                pcall = pcall, string = string, table = table, math = math }
  local chunk, err
  if setfenv then
    chunk, err = loadstring(source, name)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(source, name, "t", env)
  end
  if not chunk then
    return nil, "does not compile: " .. tostring(err)
  end
  local ok, result = pcall(chunk)
  if not ok then
    return nil, "raised an error: " .. tostring(result)
  end
  for key in pairs(env) do
    if key ~= "obj" and env[key] ~= nil and _G[key] ~= env[key] then
      return nil, "set the global `" .. tostring(key) .. "` (use locals)"
    end
  end
  return result
end

local script_path, cases_path = arg[1], arg[2]
if not script_path or not cases_path then
  io.stderr:write("usage: lua argocd-health-test.lua HEALTH.lua CASES.json\n")
  os.exit(1)
end
local source = read(script_path)
local cases, _, decode_err = json.decode(read(cases_path), 1, nil)
if type(cases) ~= "table" or #cases == 0 then
  io.stderr:write("error: " .. cases_path .. " holds no cases: " .. tostring(decode_err) .. "\n")
  os.exit(1)
end

local failures, passed, expected = 0, 0, {}
local function fail(name, why)
  failures = failures + 1
  print("FAIL " .. name .. ": " .. why)
end

for _, case in ipairs(cases) do
  local name = tostring(case.inputPath)
  if not STATUSES[case.status] or type(case.message) ~= "string" then
    fail(name, "the case names no valid healthStatus (status and message)")
  elseif type(case.object) ~= "table" then
    fail(name, "the input is not an object")
  else
    expected[case.status] = true
    local hs, err = run(source, "@" .. script_path, case.object)
    if not hs then
      fail(name, "health script " .. err)
    elseif type(hs) ~= "table" or not STATUSES[hs.status] then
      fail(name, "returned no valid status (got " .. tostring(type(hs) == "table" and hs.status or hs) .. ")")
    elseif hs.status ~= case.status then
      fail(name, string.format("status %s, expected %s (message: %s)", hs.status, case.status, tostring(hs.message)))
    elseif hs.message ~= case.message then
      fail(name, string.format("message %q, expected %q", tostring(hs.message), case.message))
    else
      passed = passed + 1
      print(string.format("ok   %-50s %-11s %s", name, hs.status, hs.message))
    end
  end
end

for _, status in ipairs({ "Healthy", "Progressing", "Degraded", "Suspended" }) do
  if not expected[status] then
    fail(cases_path, "no case expects " .. status)
  end
end

print(string.format("%d passed, %d failed (%s)", passed, failures, _VERSION))
os.exit(failures == 0 and 0 or 1)
