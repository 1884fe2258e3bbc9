"""gpufleet's declarative configuration: the gpufleet.io/v1alpha1 kinds as typed specs.

``kinds`` defines the specs (frozen dataclasses with their schema constraints and CEL rules),
``schema`` turns them into OpenAPI and parses objects into them, ``crd`` writes ``deploy/crds/``,
``status`` computes kstatus conditions. No I/O here except ``crd``'s command line.
"""
