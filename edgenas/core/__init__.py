"""Core types and conventions shared by every edgenas module."""
