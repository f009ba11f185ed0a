"""syncd's entitlement engine: a pure, I/O-free re-implementation of Schematic's rules engine.

Modules: ``wire`` (the rules-engine wire model), ``typeconvert`` (typed comparisons),
``periods`` (metric periods and resets), ``conditions`` and ``flagcheck`` (evaluation),
``compile`` (entitlements -> rules and summaries), ``credits`` (grants and burn-down),
``snapshot`` and ``evaluator`` (the precomputed hot path).
"""
