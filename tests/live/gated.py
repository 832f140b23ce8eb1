"""A test strategy with the ML plans' drawdown kill switch on the fast momentum baseline (the live and
dashboard tests' kill switch, without training models)."""
from risk.manager import RiskManager
from strategies.ml import RiskGatedPlan
from strategies.momentum_breakout import MomentumBreakout


class GatedBreakout(MomentumBreakout):
    """The baseline behind the ML plans' drawdown kill switch (``RiskGatedPlan``'s own methods): tripped,
    it sells everything and places no entry until an operator resets it."""

    reset_kill_switch = RiskGatedPlan.reset_kill_switch
    risk_figures = RiskGatedPlan.risk_figures
    export_state = RiskGatedPlan.export_state
    import_state = RiskGatedPlan.import_state
    _decision = RiskGatedPlan._decision

    def __init__(self):
        super().__init__()
        self.risk = RiskManager(self.cfg.risk)
        self.halted = None
        self.decision_lines = []
        self.bar_risk_components = []  # no risk-scored entries here

    def decide(self, now, fresh):
        gate = self.risk.update_equity(now, self.broker.getvalue())
        if gate.flatten:
            self.halted = self.halted or {"datetime": str(now), "reason": gate.reason}
            for d in self.datas:
                self.exit_position(d, "kill_switch")
            return
        super().decide(now, fresh)
