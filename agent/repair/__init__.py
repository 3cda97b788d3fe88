"""The repair engine: recovers corrupted telegrams exactly, or rejects them with a reason."""

from agent.repair.engine import Outcome, Repairer
from agent.repair.profile import MeterProfile

__all__ = ["MeterProfile", "Outcome", "Repairer"]
