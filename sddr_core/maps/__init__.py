"""Operations on stacks of depth maps that every layer shares: input checks and layout,
resampling, least-squares alignment, gradients, guided filtering."""
