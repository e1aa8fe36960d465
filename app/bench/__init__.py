"""`alert-history bench`: the pipeline, the bridge and the queries measured on real services."""
