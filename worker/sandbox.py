"""The workflow sandbox, less one cost that protects nothing: the serialization context of each payload.

For every payload sequence it encodes or decodes (Baton's are encrypted, so
each one is visited), temporalio asks the run which command it belongs to; the
sandboxed runner answers by compiling and executing a snippet of code inside
the sandbox, with its import hooks applied, each time: ~16 % of a Baton
worker's CPU on the throughput benchmark. The answer is SDK code reading the
run's pending commands (temporalio is passed through the sandbox, so it is the
same code either way); no workflow code runs in it. Here it is asked directly.
Workflow code (`activate`, and the import of the workflow) still runs in the
sandbox as before.
"""

from __future__ import annotations

from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance


class _Run(_Instance):
    """A sandboxed run whose payload contexts are read from its in-sandbox instance without executing code."""

    def get_serialization_context(self, command_info):
        return self.globals_and_locals["__temporal_in_sandbox"].get_serialization_context(command_info)

    def get_external_store_context(self, command_info):
        return self.globals_and_locals["__temporal_in_sandbox"].get_external_store_context(command_info)


class BatonSandbox(SandboxedWorkflowRunner):
    """temporalio's sandbox whose runs answer payload contexts directly (module docstring)."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _Run(det, self.runner_class, self.restrictions)
