"""Architecture search: training-free screening (random, evolution), and more to come."""
