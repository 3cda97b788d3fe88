"""The repair engine: recovers corrupted telegrams exactly, or rejects them with a reason."""

from agent.repair.engine import Repairer
from agent.repair.outcome import Candidate, Change, Outcome, Repair
from agent.repair.profile import MeterProfile

__all__ = ["Candidate", "Change", "MeterProfile", "Outcome", "Repair", "Repairer"]
