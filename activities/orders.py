"""Starting an order's own workflow from the update's flow.

A child workflow would be the obvious tool, but the order's workflow must outlive the update's flow by
days (ParentClosePolicy.ABANDON), and a workflow cannot start an unrelated workflow itself. Starting it
through the worker's client is a plain, idempotent call: the id is the order's, so a retry finds it.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from schemas.lifecycle import StartOrderWorkflowInput, order_workflow_id
from workflows.ids import CHAT_ID, ORDER_ID, TENANT_ID

ORDER_WORKFLOW = "OrderWorkflow"


class OrderStarter:
    """None given: the client of the worker running the activity."""

    def __init__(self, client: Client | None = None) -> None:
        self.client = client

    @activity.defn(name="start_order_workflow")
    async def start_order_workflow(self, req: StartOrderWorkflowInput) -> str:
        client = self.client or activity.client()
        order = req.order
        wf_id = order_workflow_id(order.order_id)
        try:
            await client.start_workflow(
                ORDER_WORKFLOW,
                order,
                id=wf_id,
                task_queue=req.task_queue,
                # A retried start finds the running one; an order whose workflow already ended stays ended.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(TENANT_ID, order.driver.tenant_id),
                        SearchAttributePair(CHAT_ID, str(order.driver.chat_id)),
                        SearchAttributePair(ORDER_ID, order.order_id),
                    ]
                ),
                priority=Priority(fairness_key=order.driver.tenant_id),
            )
        except WorkflowAlreadyStartedError:
            activity.logger.info("order workflow %s already ran", wf_id)
        return wf_id
