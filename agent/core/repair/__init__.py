"""The repair engine: recovers corrupted telegrams exactly, or rejects them with a reason."""

from agent.core.repair.engine import Repairer
from agent.core.repair.outcome import Candidate, Change, Outcome, Repair
from agent.core.repair.profile import MeterProfile

__all__ = ["Candidate", "Change", "MeterProfile", "Outcome", "Repair", "Repairer"]
