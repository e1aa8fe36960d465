"""`alert-history bench`: the pipeline, the bridge and the queries measured on real services.

cli (arguments, the phases' order) → run (what the phases share) → phases, reads, churn (one function per phase) →
load (backlog and webhook load), measure (polling, rates, percentiles), proc (processes, RSS, CPU from /proc)
→ report (the table and the BENCH line). stream generates the alerts, naive is the per-event baseline agent.
"""
