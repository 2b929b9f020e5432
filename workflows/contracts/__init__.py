"""Each process's pydantic contracts: its input, its steps' typed answers, what people see, its result.

Apart from the workflow that uses them so the sandbox can pass them through:
built once per worker rather than once per run, where building them was most
of a run's CPU and memory (benchmarks/throughput.py, benchmarks/parked.py).
The process modules re-export them: model steps recorded before the move name
their output type by its old path, "workflows.onboarding:WelcomeEmail".
"""
