"""The typed shape of the one config file.

Every number lives in ``config/default.toml``; this module only says what each key
is, its type and its bounds. A user's file is merged over the defaults, so it
names only what it changes. Unknown or mistyped keys fail with their dotted name.
"""
from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Fraction = Field(ge=0.0, le=1.0)


class Section(BaseModel):
    """Frozen, strict: a typo in a key is an error, not a silently ignored default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value, info):
        # TOML has no null: an empty string stands for "not set" where a field allows None.
        field = cls.model_fields[info.field_name]
        if value == "" and field.annotation is not str and "None" in str(field.annotation):
            return None
        return value


class DataConfig(Section):
    paths: list[str] = Field(min_length=1, description="CSV files or folders, one symbol per file")
    sector_map: str | None = Field(description="CSV symbol,sector; empty string for none")
    drop_missing_prices: bool = Field(description="drop rows with a missing price (with a warning) instead of failing")
    news: str | None = Field(description="CSV timestamp,symbol,headline for sentiment features; empty for none")
    macro: list[str] = Field(description="extra series (VIX, rates, dollar index) as CSV files, used as market features")


class CostsConfig(Section):
    commission_bps: float = Field(ge=0, description="commission per side, basis points of traded value")
    slippage_bps: float = Field(ge=0, description="slippage per side, basis points, against the trader")
    fill: Literal["next_open", "next_close"] = Field(description="market orders fill at the next bar's open or close")


class BacktestConfig(Section):
    strategy: str
    cash: float = Field(gt=0)
    start: _dt.date | None
    end: _dt.date | None
    seed: int = Field(ge=0)
    out_root: str = Field(description="folder under which each run gets a new folder when --out is not given")
    plot: bool
    chart_symbols: int = Field(ge=0, description="symbols drawn on Backtrader's chart (most traded first)")
    runonce: bool = Field(description="Backtrader's vectorised indicator mode; results are identical either way")
    progress: bool = Field(description="show a progress bar on long runs")

    @model_validator(mode="after")
    def _range(self):
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class MomentumBreakoutConfig(Section):
    breakout_bars: int = Field(ge=2, description="enter when the close exceeds the highest high of this many previous bars")
    momentum_bars: int = Field(ge=1, description="... and the return over this many bars is above min_momentum")
    min_momentum: float
    trend_bars: int = Field(ge=2, description="exit on signal when the close falls below its moving average over this many bars")
    stop_pct: float = Field(gt=0, lt=1, description="fixed stop below the signal close (the blueprint's 2-3%)")
    max_hold_bars: int = Field(ge=1, description="exit after this many bars")
    position_weight: float = Field(gt=0, le=1, description="target weight of each new position")


class RiskConfig(Section):
    max_positions: int = Field(ge=1)
    max_position_weight: float = Fraction
    min_position_value: float = Field(ge=0)
    risk_per_trade: float = Fraction
    daily_loss_limit: float = Fraction
    max_drawdown: float = Fraction


class FeaturesConfig(Section):
    pass


class ModelsConfig(Section):
    pass


class LiveConfig(Section):
    pass


class ReportConfig(Section):
    blueprint_targets: dict[str, float] = Field(description="the blueprint's promises, shown beside what a run achieved")
    leak_alarm_accuracy: float = Fraction
    bootstrap_samples: int = Field(ge=100)


class Config(Section):
    data: DataConfig
    costs: CostsConfig
    backtest: BacktestConfig
    momentum_breakout: MomentumBreakoutConfig
    risk: RiskConfig
    features: FeaturesConfig
    models: ModelsConfig
    live: LiveConfig
    report: ReportConfig
