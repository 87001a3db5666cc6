"""klrpn: a reproduction of KL-RPN (KL-Divergence-Based Region Proposal Network)."""

__version__ = "0.1.0"
