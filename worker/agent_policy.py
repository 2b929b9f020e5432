"""An agent run's declaration and policy, from this worker: its config and the processes it registered.

`baton-agent` can be started by anyone who can reach the namespace, with any
task. So the agent run asks the worker (a local activity, recorded in its
history) and trusts only the answer: the worker looks the agent up in the
`agents` its registered process declares, takes the policy from baton.toml
with the agent's own grant only, and first checks that the run was started by
a run of that very process on this worker's task queue. Anything else is
refused (`AgentRefused`, never retried), before the agent takes any step.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from activities.policy import PolicyActivities
from workflows.agents import Agent, AgentDeclaration, AgentPolicy, AgentPolicyRequest
from workflows.engine import Process


class AgentPolicies:
    def __init__(self, policy: PolicyActivities, workflows: Iterable[type]) -> None:
        self._policy = policy
        processes = [w for w in workflows if isinstance(w, type) and issubclass(w, Process)]
        names = [p.name for p in processes]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"two registered processes are named {', '.join(twice)}: a process name must be unique")
        self._agents: dict[str, dict[str, Agent]] = {p.name: {a.name: a for a in p.agents} for p in processes if p.agents}

    @activity.defn(name="agent_policy")
    async def agent_policy(self, request: AgentPolicyRequest) -> AgentPolicy:
        agent = self._declared(request)
        await self._check_parent(request)
        policy = await self._policy.run_policy(request.process)
        grantee = f"{request.process}/{request.agent}"
        mine = {k: g for k, g in (policy.grants or {}).items() if k == grantee}
        return AgentPolicy(declaration=AgentDeclaration.of(agent, request.process), policy=policy.model_copy(update={"grants": mine}))

    def _declared(self, request: AgentPolicyRequest) -> Agent:
        if request.parent_id is None or request.parent_run_id is None:
            raise _refused(f"agent {request.process}/{request.agent} was not started by a Baton process: it has no parent run")
        agents = self._agents.get(request.process)
        if agents is None:
            raise _refused(f"{request.process!r} is no process with agents on this worker (known: {', '.join(sorted(self._agents))})")
        if request.agent not in agents:
            raise _refused(f"process {request.process} declares no agent {request.agent!r} (declared: {', '.join(agents)})")
        return agents[request.agent]

    async def _check_parent(self, request: AgentPolicyRequest) -> None:
        """The parent is a running run of the process the task names, on this worker's task queue."""
        parent = activity.client().get_workflow_handle(request.parent_id, run_id=request.parent_run_id)
        found = await parent.describe()
        queue = activity.info().task_queue
        if found.workflow_type != request.process:
            raise _refused(f"agent {request.agent}: its parent {request.parent_id} is a {found.workflow_type} run, not {request.process}")
        if found.task_queue != queue:
            raise _refused(f"agent {request.agent}: its parent {request.parent_id} runs on task queue {found.task_queue}, "
                           f"not on this worker's {queue}")
        if found.status is not WorkflowExecutionStatus.RUNNING:
            raise _refused(f"agent {request.agent}: its parent {request.parent_id} is not running ({found.status.name.lower()})")


def _refused(message: str) -> ApplicationError:
    return ApplicationError(message, type="AgentRefused", non_retryable=True)
