"""latentstudio.face"""
