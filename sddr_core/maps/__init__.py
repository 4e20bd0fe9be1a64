"""Operations on stacks of depth maps that every layer shares: input checks and layout,
clipped or quantised input detection, resampling, least-squares alignment, gradients, box
means, guided filtering."""
