"""Knowledge distillation: losses now; the generic teacher and CDD build on them."""
