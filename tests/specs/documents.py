"""One valid YAML document of every kind, as the tests' starting point."""

NODE = """\
apiVersion: gridplace/v1alpha1
kind: Node
metadata: {name: lis-3090-a, labels: {tier: community}}
spec:
  region: eu-west
  provider: casa-lisboa
  pricePerHour: 0.42
  gpus:
    - model: rtx-3090
      count: 2
  interconnect: pcie
  networkGbps: 1
  reliability: 0.97
  claims: self-reported
status:
  thermal: {throttleRatio: 0.18, windowHours: 24}
  healthy: true
"""

WORKLOAD = """\
apiVersion: gridplace/v1alpha1
kind: InferenceWorkload
metadata: {name: chat-8b}
spec:
  model: llama-3.1-8b
  precisions: [bf16, fp8, int4]
  engine: vllm
  slo: {ttftMs: 800, itlMs: 60}
  traffic:
    requestsPerSecond: 12
    promptTokens: 1500
    outputTokens: 300
    sources: [{region: eu-west, share: 0.7}, {region: us-east, share: 0.3}]
  replicas: {min: 2, max: 16}
  spread: {across: provider, maxPerDomain: 1}
  priority: 100
"""

PROBES = """\
apiVersion: gridplace/v1alpha1
kind: LatencyProbes
metadata: {name: probes-2026-11-27}
spec:
  measuredAt: 2026-11-27T10:00:00Z
  samples:
    - {source: lis-3090-a, target: fra-a100-1, rttMs: [31.2, 30.9, 44.0]}
    - {source: region/us-east, target: lis-3090-a, rttMs: [96.5, 97.1]}
    - {source: lis-3090-a, target: cache/hf-mirror, rttMs: [], lost: 3, error: timed out}
"""

PLAN = """\
apiVersion: gridplace/v1alpha1
kind: PlacementPlan
metadata: {name: plan-7, generation: 7}
spec:
  assignments:
    - workload: chat-8b
      node: ams-4090-c
      gpus: [0]
      precision: fp8
      tensorParallel: 1
      predicted: {ttftMs: 180, itlMs: 11.5, capacityRps: 3.1, vramGiB: 19.8}
status:
  solver: {status: OPTIMAL, wallSeconds: 0.41, objective: 123, bound: 123}
  workloads: [{name: chat-8b, demandRps: 12, capacityRps: 12.4, sloMet: true}]
  unplaced: [{workload: chat-70b, reasons: ["no node has 38.1 GiB"]}]
"""

GPU_MODEL = """\
apiVersion: gridplace/v1alpha1
kind: GPUModel
metadata: {name: rtx-4090-48gb}
spec:
  displayName: GeForce RTX 4090 48GB (modded)
  vendor: nvidia
  architecture: ada
  computeCapability: "8.9"
  memoryGiB: 48
  memoryType: GDDR6X
  memoryBusWidthBits: 384
  memoryBandwidthGBps: 1008
  tensorTflops: {fp16: 165.2, bf16: 165.2, fp8: 330.3, int8: 660.6}
  tdpWatts: 450
  pcie: {generation: 4, lanes: 16}
  formFactor: pcie
  sources: ["measured by the provider"]
"""

MODEL_ARCHITECTURE = """\
apiVersion: gridplace/v1alpha1
kind: ModelArchitecture
metadata: {name: tiny-moe}
spec:
  huggingFaceRepo: example/Tiny-MoE
  parametersBillion: 12
  activeParametersBillion: 3
  layers: 24
  hiddenSize: 2048
  attentionHeads: 16
  kvHeads: 4
  headDim: 128
  vocabSize: 32000
  maxContextTokens: 32768
  moe: {experts: 16, activeExperts: 2}
"""

PROFILE = """\
apiVersion: gridplace/v1alpha1
kind: PerformanceProfile
metadata: {name: llama-8b-on-4090}
spec:
  model: meta-llama/Llama-3.1-8B
  gpu: NVIDIA GeForce RTX 4090
  precision: int4
  engine: llama.cpp
  points:
    - {batch: 1, promptTokens: 512, ttftMs: 95}
    - {batch: 1, contextTokens: 1024, itlMs: 7.9}
  source: llama-bench on the provider's node
"""

ALL = {
    "Node": NODE,
    "InferenceWorkload": WORKLOAD,
    "LatencyProbes": PROBES,
    "PlacementPlan": PLAN,
    "GPUModel": GPU_MODEL,
    "ModelArchitecture": MODEL_ARCHITECTURE,
    "PerformanceProfile": PROFILE,
}
