"""Knowledge distillation: the losses, distilling a student, and the generic teacher.

- `losses`: Hinton KD, feature KD through a 1×1 projector, relational and
  similarity-preserving KD, embedding KD (one function or module each, with citations).
- `kd`: `Distiller` and `KDConfig`, distillation as a `Trainer` loss hook.
- `teacher_net`: an NB201 teacher that can be FiLM-conditioned on a student's capacity.
- `generic_teacher`: GTN, one teacher trained with students sampled from a supernet.
- `student_sampler`: GTN's learnable student distribution and its architecture-loss update.
- `modes`: how `train_arch` trains plain, as a generic teacher, or distilling; teacher files.
The generic teacher's design and measurements: docs/methods/gtn.md.
"""
