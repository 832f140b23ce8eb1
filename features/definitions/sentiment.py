"""Sentiment from a news file (``data.news``: CSV timestamp,symbol,headline): headline scores from
the VADER lexicon (compound score in [-1, 1]), counts and decayed averages. A headline counts only
for bars that close at or after its publication. Present only when news is configured."""
from __future__ import annotations


from features.formulas import cs_mean, cs_rank, rmean, rsum, safe_ratio, window
from features.registry import feature

NEWS = ("news",)


HALF_LIVES = 10  # an exponentially weighted window keeps this many half-lives (oldest weight 2^-10)


def _decayed(x, halflife):
    """sum_k 2^(-k/h) x_{t-k} over the last 10 half-lives: a finite window, so the value does not
    depend on how far back the news goes."""
    n = HALF_LIVES * halflife
    return window("dot", x, n, tuple(0.5 ** ((n - 1 - k) / halflife) for k in range(n)))


@feature("news_count_{n}", group="sentiment", grid={"n": (1, 5, 20)}, requires=NEWS)
def news_count(b, n):
    """Number of the symbol's headlines over its last n bars."""
    return rsum(b.news("count"), n)


@feature("news_abnormal_{n}", group="sentiment", grid={"n": (20,)}, requires=NEWS)
def news_abnormal(b, n):
    """Headlines at this bar / mean headlines per bar over n bars (1 when there were none)."""
    return safe_ratio(b.news("count"), rmean(b.news("count"), n), 1.0)


@feature("sent_{n}", group="sentiment", grid={"n": (1, 5, 20)}, requires=NEWS)
def sentiment_mean(b, n):
    """Mean VADER compound score of the headlines over the last n bars (0 without headlines)."""
    return safe_ratio(rsum(b.news("score"), n), rsum(b.news("count"), n), 0.0)


@feature("sent_decay_{h}", group="sentiment", grid={"h": (2, 5, 10)}, requires=NEWS)
def sentiment_decayed(b, h):
    """Exponentially weighted mean score, half-life h bars: sum_k w_k score_{t-k} / sum_k w_k count_{t-k},
    w_k = 2^(-k/h) over the last 10 h bars (0 without headlines in that window)."""
    return safe_ratio(_decayed(b.news("score"), h), _decayed(b.news("count"), h), 0.0)


@feature("sent_pos_share_{n}", group="sentiment", grid={"n": (5, 20)}, requires=NEWS)
def positive_share(b, n):
    """Share of the headlines over n bars scoring above the neutral band (features.news_neutral_band)."""
    return safe_ratio(rsum(b.news("positive"), n), rsum(b.news("count"), n), 0.0)


@feature("sent_neg_share_{n}", group="sentiment", grid={"n": (5, 20)}, requires=NEWS)
def negative_share(b, n):
    """Share of the headlines over n bars scoring below minus the neutral band."""
    return safe_ratio(rsum(b.news("negative"), n), rsum(b.news("count"), n), 0.0)


@feature("sent_abs_{n}", group="sentiment", grid={"n": (20,)}, requires=NEWS)
def sentiment_intensity(b, n):
    """Mean |score| of the headlines over n bars: how emotional the coverage is."""
    return safe_ratio(rsum(b.news("abs_score"), n), rsum(b.news("count"), n), 0.0)


@feature("mkt_news_count_{n}", group="sentiment", grid={"n": (1,)}, requires=NEWS)
def market_news_count(b, n):
    """Mean number of headlines per symbol at this bar across the universe."""
    return cs_mean(rsum(b.news("count"), n))


@feature("mkt_sent_{n}", group="sentiment", grid={"n": (1, 20)}, requires=NEWS)
def market_sentiment(b, n):
    """Mean score of all the universe's headlines over n bars (0 without headlines)."""
    return safe_ratio(cs_mean(rsum(b.news("score"), n)), cs_mean(rsum(b.news("count"), n)), 0.0)


@feature("sent_rel_{n}", group="sentiment", grid={"n": (20,)}, requires=NEWS)
def relative_sentiment(b, n):
    """The symbol's mean score over n bars minus the universe's."""
    own = safe_ratio(rsum(b.news("score"), n), rsum(b.news("count"), n), 0.0)
    universe = safe_ratio(cs_mean(rsum(b.news("score"), n)), cs_mean(rsum(b.news("count"), n)), 0.0)
    return own - universe


@feature("cs_rank_sent_{n}", group="sentiment", grid={"n": (20,)}, requires=NEWS)
def rank_sentiment(b, n):
    """Percentile rank of the n-bar mean score among the symbols at this bar."""
    return cs_rank(safe_ratio(rsum(b.news("score"), n), rsum(b.news("count"), n), 0.0))
