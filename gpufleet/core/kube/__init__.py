"""Kubernetes plumbing every gpufleet service shares: the API client (raw JSON over the official
client's transport), its exception family, and a list+watch informer with 410 re-list and jittered
backoff. No gpufleet domain logic here: callers hand the informer a sink.
"""
