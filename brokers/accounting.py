"""Cash, position and value arithmetic of a fill, exactly as Backtrader's BackBroker does it.

The simulated venue and the live broker both account fills here, with Backtrader's own ``Position``
and ``CommInfoBase``, in BackBroker's order of floating-point operations (``bbroker.py``: ``_execute``
and ``_get_value``, for stock-like assets without leverage or interest). So a replay's cash and equity
equal the backtest's to the last bit, and with them every order size the strategy derives from them.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.compat import bt


def stock_commission(commission_bps: float):
    """Backtrader's commission scheme for stocks as ``engine.backtest.configure_broker`` sets it."""
    return bt.CommInfoBase(commission=commission_bps / 1e4, commtype=bt.CommInfoBase.COMM_PERC,
                           stocklike=True, percabs=True)


@dataclass(frozen=True)
class FillAccounting:
    """A fill split into the part that closes the position and the part that opens it (Backtrader's
    ``order.execute`` arguments), and the cash after it."""

    size: float
    price: float
    cash: float
    closed: float
    closedvalue: float
    closedcomm: float
    opened: float
    openedvalue: float
    openedcomm: float
    pnl: float
    psize: float
    pprice: float
    refused_open: bool = False  # the opening part was refused for lack of cash (BackBroker: Margin)

    @property
    def commission(self) -> float:
        return self.closedcomm + self.openedcomm


def account_fill(position, cash: float, size: float, price: float, comminfo, *,
                 refuse_negative_cash: bool = False) -> FillAccounting:
    """The cash after filling ``size`` (signed) at ``price`` against ``position`` (not modified).

    BackBroker: the closing part returns its value at the entry price plus the profit, less
    commission; the opening part costs its value plus commission. With ``refuse_negative_cash`` an
    opening part that would leave cash below zero is not filled (BackBroker's margin rule); a real
    venue's fill has happened, so the live broker books it whatever the cash.
    """
    pprice_orig = position.price
    psize, pprice, opened, closed = position.pseudoupdate(size, price)
    pnl = comminfo.profitandloss(-closed, pprice_orig, price)
    closedvalue = closedcomm = openedvalue = openedcomm = 0.0
    if closed:
        closedvalue = comminfo.getvaluesize(-closed, pprice_orig)
        closecash = closedvalue
        if closedvalue > 0:
            closecash /= comminfo.get_leverage()
        cash += closecash + pnl * comminfo.stocklike
        closedcomm = comminfo.getcommission(closed, price)
        cash -= closedcomm
    if opened:
        openedvalue = comminfo.getvaluesize(opened, price)
        opencash = openedvalue
        if openedvalue > 0:
            opencash /= comminfo.get_leverage()
        cash_before = cash
        cash -= opencash
        openedcomm = comminfo.getcommission(opened, price)
        cash -= openedcomm
        if refuse_negative_cash and cash < 0.0:
            return FillAccounting(size=closed, price=price, cash=cash_before, closed=closed,
                                  closedvalue=closedvalue, closedcomm=closedcomm, opened=0, openedvalue=0.0,
                                  openedcomm=0.0, pnl=pnl, psize=psize, pprice=pprice, refused_open=True)
    return FillAccounting(size=size, price=price, cash=cash, closed=closed, closedvalue=closedvalue,
                         closedcomm=closedcomm, opened=opened, openedvalue=openedvalue, openedcomm=openedcomm,
                         pnl=pnl, psize=psize, pprice=pprice)


def cash_check(position, cash: float, size: float, price: float, comminfo) -> float:
    """BackBroker's cash check of a submitted order (``_execute`` without ``ago``): the order is
    pseudo-filled at its creation price, the closing part earns no profit; ``position`` is updated
    (pass a clone). A negative result means the order would not be accepted (Margin)."""
    psize, pprice, opened, closed = position.update(size, price)
    if closed:
        closedvalue = comminfo.getvaluesize(-closed, price)
        closecash = closedvalue
        if closedvalue > 0:
            closecash /= comminfo.get_leverage()
        cash += closecash + 0 * comminfo.stocklike
        cash -= comminfo.getcommission(closed, price)
    if opened:
        openedvalue = comminfo.getvaluesize(opened, price)
        opencash = openedvalue
        if openedvalue > 0:
            opencash /= comminfo.get_leverage()
        cash -= opencash
        cash -= comminfo.getcommission(opened, price)
    return cash


def portfolio_value(cash: float, holdings, comminfo) -> float:
    """Cash plus positions marked at ``price`` for ``(position, price)`` in ``holdings``, summed in that
    order the way BackBroker's ``_get_value`` does (long values split into cost and unrealised profit)."""
    pos_value_unlever = 0.0
    for position, price in holdings:
        dvalue = comminfo.getvaluesize(position.size, price)
        dunrealized = comminfo.profitandloss(position.size, position.price, price)
        if dvalue > 0:
            dvalue -= dunrealized
            pos_value_unlever += dvalue / comminfo.get_leverage()
            pos_value_unlever += dunrealized
        else:
            pos_value_unlever += dvalue
    return cash + pos_value_unlever
