"""latentstudio.models"""
