"""InstructCoder study utilities."""
