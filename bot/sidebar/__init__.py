"""The staff sidebar in the WeCom chat toolbar: who the customer is to us, and what to do."""
