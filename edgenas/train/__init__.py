"""Training and evaluation of candidate networks."""
