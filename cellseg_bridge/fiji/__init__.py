"""Bridge to ImageJ/Fiji: JVM start and conversions on ImageJ 1.x classes."""
