"""Clients of the kubelet's local APIs (the PodResources gRPC API over a unix socket), and a fake kubelet.

Nothing here decides anything: it turns the kubelet's answers into plain data.
"""
