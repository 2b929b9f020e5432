"""Benchmarks: `python -m benchmarks.<name>`, figures printed as ratios to a baseline measured in the same run.

overhead    per model step: a Baton process vs bare temporalio activities
cost        per case: tiers as shipped vs everything on the strong tier vs an unbounded agent
throughput  concurrent onboarding runs/s vs the same number of bare workflows
parked      memory per run parked for approval; approval -> next step latency; drain time
"""
