"""cad2scan.model"""
