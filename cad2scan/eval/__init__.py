"""cad2scan.eval"""
