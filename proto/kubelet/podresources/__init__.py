"""The kubelet PodResources API (``k8s.io/kubelet/pkg/apis/podresources``)."""
