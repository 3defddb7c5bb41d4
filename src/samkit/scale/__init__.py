"""The data engine at scale: de-identification, the automatic stage on Ray, dataset statistics.

`deid` (faces and plates blurred), `store` (inputs and outputs on local disk or fsspec URIs),
`pipeline` (`samkit engine` on Ray Data), `stats` (`samkit stats`). Ray is imported only where
the pipeline runs (the `scale` extra).
"""
