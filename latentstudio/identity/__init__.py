"""latentstudio.identity"""
