-- A mixed read load on archdb for wrk (benches/load.sh runs it): NB201 and architecture
-- lookups, result filters, summaries, Pareto fronts, the benchmark list, best-per-model
-- selections, similarity searches and health probes, weighted like a fleet of agents exploring
-- the starter set. Parameters vary per request (cells and ids at random) so the lookups miss any
-- cache; the aggregates repeat, as agents ask the same questions.

local nns = {"LSTM", "ComplexNet", "AlexNet", "FasterRCNN",
  "C10C-RESNETLSTM-6a517327bf0ef897a22186a2061e85b3", "C10C-RESNETLSTM-8f7ac9c241d5b9546f8cd3484e0e100b"}
local lemur_datasets = {"cifar-10", "cifar-100", "mnist", "svhn", "imagenette"}
local nb201_datasets = {"cifar10", "cifar100", "ImageNet16-120"}
-- Architecture ids looked up: a range in which every id is stored (ids of a database are not
-- contiguous: an import's conflicting inserts use ids up).
local min_id = tonumber(os.getenv("ARCHDB_LOAD_MIN_ID") or "1")
local max_id = tonumber(os.getenv("ARCHDB_LOAD_MAX_ID") or "10000")

local function pick(list) return list[math.random(#list)] end

-- {weight in percent, path generator}
local mix = {
  {20, function() return "/v1/benchmarks/nb201/" .. math.random(0, 15624) end},
  {15, function() return "/v1/architectures/" .. math.random(min_id, max_id) end},
  {8,  function() return "/v1/results?nn=" .. pick(nns) .. "&max_rows=20" end},
  {7,  function() return "/v1/results?dataset=" .. pick(lemur_datasets) .. "&metric=acc&max_rows=20" end},
  {3,  function() return "/v1/stats/summary" end},
  {5,  function() return "/v1/stats/summary?benchmark=nb201&dataset=" .. pick(nb201_datasets) end},
  {7,  function() return "/v1/stats/pareto?dataset=" .. pick(nb201_datasets) .. "&x=" .. pick({"params", "macs"}) .. "&split=test&epoch=200" end},
  {5,  function() return "/v1/benchmarks" end},
  {5,  function() return "/v1/results?unique_nn=true&max_rows=20" end},
  {5,  function() return "/v1/results/top-models?n=10&dataset=" .. pick(lemur_datasets) end},
  {10, function() return "/v1/lemur/similar?anchor_nn=" .. pick({"AlexNet", "ComplexNet", "LSTM"}) .. "&n=5" end},
  {10, function() return "/healthz" end},
}

local total = 0
for _, m in ipairs(mix) do total = total + m[1] end

request = function()
  local r = math.random(total)
  for _, m in ipairs(mix) do
    r = r - m[1]
    if r <= 0 then return wrk.format("GET", m[2]()) end
  end
end

-- Each thread its own random sequence (wrk gives each thread its own Lua state).
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("id", counter)
end

init = function()
  math.randomseed(id * 7919)
end
