"""latentstudio.gui"""
